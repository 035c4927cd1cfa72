"""The manifest of an object-store lake: one object per event, manifest/events/<seq>.json.

An event becomes visible by being created under the next sequence number with If-None-Match: *. Two
writers that listed the same last number race for the next one; the store lets exactly one create
it, and the loser backs off, lists again and takes the number after. So the numbers order every event
with no gaps and no duplicates, and a reader lists only the keys after the last one it has read."""

from __future__ import annotations

import logging
import random
import re
import time

from pydantic import ValidationError

from lake.errors import TransientError
from lake.formats import ManifestEvent
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

    def describe(self) -> str:
        return self.lake.uri(MANIFEST_EVENTS)

    def written(self) -> bool:
        return bool(self.lake.list_after(MANIFEST_EVENTS, limit=1))

    def append(self, event: ManifestEvent) -> None:
        body = event.model_dump_json().encode()
        last = max(self._read_up_to, self._appended)
        for attempt in range(MAX_ATTEMPTS):
            newer = self._events_after(last)
            last = newer[-1] if newer else last
            sequence = last + 1
            self.lake.leases.assert_held(event.stage, event.chunk_id)  # before every try: time passes here
            if self.lake.create(f"{MANIFEST_EVENTS}/{event_key(sequence)}", body):
                self._appended = max(self._appended, sequence)
                return
            pause = random.uniform(0, min(1.0, 0.02 * 2 ** attempt))
            log.debug("manifest event %d was taken by another writer; backing off %.3f s", sequence, pause)
            time.sleep(pause)
        raise TransientError(f"manifest {self.describe()}: lost the race for a sequence number {MAX_ATTEMPTS} "
                             f"times; event for chunk {event.chunk_id} not recorded")

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
        """Events created since the last read, in order; an event object that does not parse is
        skipped with a warning, as a torn line is locally."""
        numbers = self._events_after(self._read_up_to)
        bodies = self.lake.read_many([f"{MANIFEST_EVENTS}/{event_key(n)}" for n in numbers])
        events = []
        for number in numbers:
            body = bodies.get(f"{MANIFEST_EVENTS}/{event_key(number)}")
            try:
                events.append(ManifestEvent.model_validate_json(body or b""))
            except ValidationError:
                log.warning("manifest object %s/%s is not an event; skipped", self.describe(), event_key(number))
        if numbers:
            self._read_up_to = numbers[-1]
        return events
