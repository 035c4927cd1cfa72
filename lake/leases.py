"""Per-chunk leases in an object store, where there is no flock: a lease is an object created
conditionally (If-None-Match: *) with an expiry, so a dead worker's chunk is taken over once its
lease lapses.

A chunk's leases are numbered generations under leases/<stage>/<chunk_id>/; the highest one is the
current state. Taking, renewing and releasing a lease all create the next generation, and only one
creator can win a number: a holder whose renewal loses has lost the lease, and the manifest refuses its
commit (`assert_held`). Expiry is judged by the reader's clock, so a holder that stalls or whose clock
lags may not know yet that its lease lapsed and was taken over: the taker therefore fences the chunk in
the manifest before it works on it, and readers refuse the old holder's events that land after that
fence (each event carries the generation its lease was taken at, see `LeaseFence`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake.errors import TransientError
from lake.formats import Stage
from lake.paths import lease_prefix

if TYPE_CHECKING:
    from lake.object_lake import ObjectLake

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class LeaseLost(TransientError):
    """Another worker took over this chunk: nothing of ours may be committed for it."""


@dataclass
class _Held:
    prefix: str
    generation: int  # the newest one created: renewals raise it
    expires: float
    took_over: bool  # from a holder that stopped renewing it, rather than released it
    token: int = field(init=False)  # the generation it was taken at, which its manifest events carry
    stop: threading.Event = field(default_factory=threading.Event)
    lost: bool = False

    def __post_init__(self) -> None:
        self.token = self.generation


class Leases:
    def __init__(self, lake: ObjectLake, seconds: float) -> None:
        self.lake = lake
        self.seconds = seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: dict[tuple[str, str], _Held] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, stage: Stage, chunk_id: str, local: AbstractContextManager[bool]) -> Iterator[bool]:
        """True while holding the chunk's lease (renewed in the background). A lease held by a worker
        that renews it is left alone (False); one that stops being renewed (its worker died) is taken
        over when it lapses, so a retried task waits at most one lease period."""
        with local as locked:
            held = self._acquire(lease_prefix(stage, chunk_id)) if locked else None
            if held is None:
                yield False
                return
            with self._lock:
                self._held[(stage, chunk_id)] = held
            renewer = threading.Thread(target=self._renew, args=(held,), daemon=True, name=f"lease-{chunk_id}")
            renewer.start()
            try:
                if held.took_over:  # its last holder may yet create an event for the chunk: refuse it
                    self.lake.manifest().fence(stage, chunk_id, held.token)
                yield True
            finally:
                held.stop.set()
                renewer.join()
                with self._lock:
                    self._held.pop((stage, chunk_id), None)
                self._release(held)

    def token(self, stage: Stage, chunk_id: str) -> int | None:
        """The generation this process took the chunk's lease at, if it holds it."""
        with self._lock:
            held = self._held.get((stage, chunk_id))
        return held.token if held else None

    def assert_held(self, stage: Stage, chunk_id: str) -> None:
        """Raise LeaseLost if this process was working on the chunk and lost its lease."""
        with self._lock:
            held = self._held.get((stage, chunk_id))
        if held is not None and (held.lost or time.time() > held.expires):
            raise LeaseLost(f"lease on {stage} chunk {chunk_id} lapsed and another worker took it over; "
                            "this worker's result for it was not committed")

    def _acquire(self, prefix: str) -> _Held | None:
        first_seen: int | None = None
        while True:
            generation, state = self._current(prefix)
            if state is not None and not state.get("released") and state["expires"] > time.time():
                if first_seen is not None and generation != first_seen:
                    return None  # renewed meanwhile: its holder is alive
                first_seen = generation
                time.sleep(min(POLL_SECONDS, max(0.0, state["expires"] - time.time()) + 0.05))
                continue
            expires = time.time() + self.seconds  # what the lease says, not when the store answered
            if self._create(prefix, generation + 1, expires):
                return _Held(prefix, generation + 1, expires, took_over=state is not None and not state.get("released"))

    def _renew(self, held: _Held) -> None:
        while not held.stop.wait(self.seconds / 3):
            renewed_until = time.time() + self.seconds
            try:
                renewed = self._create(held.prefix, held.generation + 1, renewed_until)
            except Exception as exc:  # the store is unreachable or refuses: the lease will lapse
                renewed = False
                log.warning("cannot renew the lease %s: %s", held.prefix, exc)
            if not renewed:
                held.lost = True
                log.warning("lost the lease %s", held.prefix)
                return
            held.generation += 1
            held.expires = renewed_until

    def _release(self, held: _Held) -> None:
        """Best effort: a lease that cannot be released lapses by itself. Old generations are never
        deleted: a number that could be created again would let a late renewal win a second time."""
        if held.lost:
            return
        try:
            self._create(held.prefix, held.generation + 1, None)
        except Exception as exc:
            log.warning("cannot release the lease %s (it lapses in %g s): %s", held.prefix, self.seconds, exc)

    def _current(self, prefix: str) -> tuple[int, dict[str, Any] | None]:
        keys = [k for k in self.lake.list_after(prefix) if k.endswith(".json")]
        if not keys:
            return 0, None
        top = keys[-1]
        try:
            return int(top.removesuffix(".json")), json.loads(self.lake.read_bytes(f"{prefix}/{top}"))
        except FileNotFoundError:  # released and cleaned up between list and read
            return int(top.removesuffix(".json")), {"released": True}

    def _create(self, prefix: str, generation: int, expires: float | None) -> bool:
        """Create generation `generation`: held until `expires`, or released (None)."""
        body = {"owner": self.owner, "expires": expires or 0, "released": expires is None,
                "nonce": uuid.uuid4().hex}  # lets a retried create recognise its own object
        return self.lake.create(f"{prefix}/{generation:010d}.json", json.dumps(body).encode())
