"""The manifest of an object-store lake: one object per event, manifest/events/<seq>.json.

An event becomes visible by being created under the next sequence number with If-None-Match: *. Two
writers that listed the same last number race for the next one; the store lets exactly one create
it, and the loser backs off, lists again and takes the number after. So the numbers order every event
with no gaps and no duplicates, and a reader lists only the keys after the last one it has read.

A worker that takes over a chunk's lapsed lease first creates a lease fence in the same sequence; an
event that comes after it for that stage and chunk, made under an older lease, is refused by readers
(see `LeaseFence`)."""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from datetime import UTC, datetime

from pydantic import ValidationError

from lake.errors import TransientError
from lake.formats import LeaseFence, ManifestEvent, Stage
from lake.manifest import Manifest
from lake.object_lake import ObjectLake
from lake.paths import MANIFEST_EVENTS

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 50
EVENT_KEY = re.compile(r"[0-9]{12}\.json")


def event_key(sequence: int) -> str:
    return f"{sequence:012d}.json"


def _sequence(key: str) -> int | None:
    """The sequence number of an event key, None for any other object."""
    return int(key[:12]) if EVENT_KEY.fullmatch(key) else None


class ObjectManifest(Manifest):
    def __init__(self, lake: ObjectLake) -> None:
        super().__init__()
        self.lake = lake
        self._read_up_to = 0  # the sequence number of the last event read
        self._appended = 0  # the last one this process created (appends list only what is newer)
        self._strays: set[str] = set()  # objects under manifest/events/ that are not events, warned about
        self._fences: dict[tuple[Stage, str], int] = {}  # (stage, chunk id) -> the newest lease fenced in
        self.refused = 0  # events refused because they landed after a fence for a newer lease

    def describe(self) -> str:
        return self.lake.uri(MANIFEST_EVENTS)

    def written(self) -> bool:
        """Once an event is readable: a lease fence (or a stray object) alone is not one."""
        return next(self.events(), None) is not None

    def append(self, event: ManifestEvent) -> None:
        self._create_next(event.model_dump_json().encode(), event.stage, event.chunk_id, "event")

    def fence(self, stage: Stage, chunk_id: str, lease: int) -> None:
        """Refuse, from here on in the manifest, events for the chunk made under a lease older than `lease`
        (called by the worker that took the chunk's lapsed lease over, before it works on the chunk)."""
        fence = LeaseFence(fence_id=uuid.uuid4().hex, stage=stage, chunk_id=chunk_id, lease=lease,
                           created_at=datetime.now(UTC))
        self._create_next(fence.model_dump_json().encode(), stage, chunk_id, "lease fence")

    def _lease(self, stage: Stage, chunk_id: str) -> int | None:
        return self.lake.leases.token(stage, chunk_id)

    def _create_next(self, body: bytes, stage: Stage, chunk_id: str, what: str) -> None:
        """Create `body` under the next sequence number, listing again after each lost race."""
        last = max(self._read_up_to, self._appended)
        for attempt in range(MAX_ATTEMPTS):
            newer = self._events_after(last)
            last = newer[-1] if newer else last
            sequence = last + 1
            self.lake.leases.assert_held(stage, chunk_id)  # before every try: time passes here
            if self.lake.create(f"{MANIFEST_EVENTS}/{event_key(sequence)}", body):
                self._appended = max(self._appended, sequence)
                return
            pause = random.uniform(0, min(1.0, 0.02 * 2 ** attempt))
            log.debug("manifest event %d was taken by another writer; backing off %.3f s", sequence, pause)
            time.sleep(pause)
        raise TransientError(f"manifest {self.describe()}: lost the race for a sequence number {MAX_ATTEMPTS} "
                             f"times; {what} for chunk {chunk_id} not recorded")

    def _events_after(self, sequence: int) -> list[int]:
        """The sequence numbers of the event keys after `sequence`, in order. Anything else under
        manifest/events/ is skipped (with a warning the first time): a stray `.bak` sorts among the
        events and `zzz.txt` after all of them, and neither may be taken for the last event, or
        appends would retry a taken number and reads would list after the stray for good."""
        numbers = []
        for key in self.lake.list_after(MANIFEST_EVENTS, event_key(sequence) if sequence else ""):
            number = _sequence(key)
            if number is not None:
                numbers.append(number)
            elif key not in self._strays:
                self._strays.add(key)
                log.warning("manifest object %s/%s is not an event; skipped", self.describe(), key)
        return numbers

    def _read_new(self) -> list[ManifestEvent]:
        """Events created since the last read, in order, without those a lease fence before them refuses;
        an event object that does not parse is skipped with a warning, as a torn line is locally."""
        numbers = self._events_after(self._read_up_to)
        bodies = self.lake.read_many([f"{MANIFEST_EVENTS}/{event_key(n)}" for n in numbers])
        events = []
        for number in numbers:
            key = event_key(number)
            body = bodies.get(f"{MANIFEST_EVENTS}/{key}") or b""
            try:
                event = ManifestEvent.model_validate_json(body)
            except ValidationError:
                self._read_fence(key, body)
                continue
            if not self._fenced_off(key, event):
                events.append(event)
        if numbers:
            self._read_up_to = numbers[-1]
        return events

    def _read_fence(self, key: str, body: bytes) -> None:
        try:
            fence = LeaseFence.model_validate_json(body)
        except ValidationError:
            log.warning("manifest object %s/%s is not an event; skipped", self.describe(), key)
            return
        chunk = (fence.stage, fence.chunk_id)
        self._fences[chunk] = max(self._fences.get(chunk, 0), fence.lease)

    def _fenced_off(self, key: str, event: ManifestEvent) -> bool:
        """An event made under a lease that another worker took over before the event landed."""
        fence = self._fences.get((event.stage, event.chunk_id))
        if event.lease is None or fence is None or event.lease >= fence:
            return False
        self.refused += 1
        log.warning("manifest event %s/%s for %s chunk %s was made under lease %d, which another worker took "
                    "over (lease %d) before it landed; refused", self.describe(), key, event.stage, event.chunk_id,
                    event.lease, fence, extra={"event": "event_refused", "stage": event.stage,
                                               "chunk_id": event.chunk_id})
        return True
