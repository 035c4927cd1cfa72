"""Overlapped stages for `hist ingest`: transform takes a chunk as soon as extract commits it and load
as soon as transform commits it, through bounded queues, so wall time is about that of the slowest
stage rather than the sum (over the internet, extract mostly waits on the network).

The stages still hand off only through the lake: the queues carry chunk ids, each stage reads what
the manifest says was committed, and a last pass over the job's chunks catches whatever was in the
lake already (a resumed run). A failure or Ctrl-C stops the other stages after the chunk in hand, so
nothing is half-committed and a rerun resumes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Report = TypeVar("Report")
DONE = ""  # no chunk id is empty
POLL_SECONDS = 0.2
QUEUE_DEPTH = 8  # chunks committed upstream and not yet taken: backpressure, not a buffer


@dataclass
class Relay(Generic[Report]):
    """One downstream stage on its own thread. `step(ids, committed, should_stop)` runs the stage on
    a batch of chunk ids (and, once upstream is done, on all of `final_ids`), calling
    `committed(chunk_id)` for each chunk it commits; `absorb` adds each step's report to `report`."""

    name: str
    step: Callable[[set[str], Callable[[str], None], Callable[[], bool]], Report]
    report: Report
    absorb: Callable[[Report, Report], None]
    final_ids: set[str]
    stop: threading.Event
    downstream: Relay[Any] | None = None
    inbox: queue.Queue[str] = field(default_factory=lambda: queue.Queue(maxsize=QUEUE_DEPTH))
    error: BaseException | None = None

    def send(self, chunk_id: str) -> None:
        """Hand a committed chunk to this stage; waits while its queue is full, unless stopping."""
        while not self.stop.is_set():
            try:
                self.inbox.put(chunk_id, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"relay-{self.name}", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            upstream_done = False
            while not upstream_done and not self.stop.is_set():
                ids = self._take()
                upstream_done = DONE in ids
                if ids - {DONE}:
                    self._pass(ids - {DONE})
            if upstream_done and not self.stop.is_set():
                self._pass(self.final_ids)
        except BaseException as exc:  # re-raised in the calling thread by `join`
            self.error = exc
            self.stop.set()
        finally:
            if self.downstream is not None:
                self.downstream.send(DONE)

    def _take(self) -> set[str]:
        """Every chunk id that has arrived (waiting for the first), so one pass serves many chunks."""
        ids: set[str] = set()
        while not ids and not self.stop.is_set():
            try:
                ids.add(self.inbox.get(timeout=POLL_SECONDS))
            except queue.Empty:
                continue
        while not self.inbox.empty():
            ids.add(self.inbox.get_nowait())
        return ids

    def _pass(self, ids: set[str]) -> None:
        forward = self.downstream.send if self.downstream is not None else (lambda _chunk_id: None)
        self.absorb(self.report, self.step(ids, forward, self.stop.is_set))


def run_relays(relays: list[Relay[Any]], upstream: Callable[[Callable[[str], None]], Report]) -> Report:
    """Start `relays` (a chain, first to last), run `upstream(send)` in the calling thread, feeding the
    first relay, then wait for all. The first failure, upstream's or a relay's, stops the others and
    is raised here."""
    threads = [relay.start() for relay in relays]
    first = relays[0]
    try:
        result = upstream(first.send)
    except BaseException:
        first.stop.set()
        raise
    finally:
        first.send(DONE)
        for thread in threads:
            thread.join()
    for relay in relays:
        if relay.error is not None:
            raise relay.error
    return result
