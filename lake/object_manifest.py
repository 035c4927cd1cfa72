"""The manifest of an object-store lake: one object per event, manifest/events/<seq>.json.

An event becomes visible by being created under the next sequence number with If-None-Match: *. Two
writers that listed the same last number race for the next one; the store lets exactly one create
it, and the loser backs off, lists again and takes the number after. So the numbers order every event
with no gaps and no duplicates, and a reader lists only the keys after the last one it has read."""

from __future__ import annotations

import logging
import random
import time

from pydantic import ValidationError

from lake.errors import TransientError
from lake.formats import ManifestEvent
from lake.manifest import Manifest
from lake.object_lake import ObjectLake
from lake.paths import MANIFEST_EVENTS

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 50


def event_key(sequence: int) -> str:
    return f"{sequence:012d}.json"


def _sequence(key: str) -> int | None:
    """The sequence number of an event key, None for any other object."""
    number = key.removesuffix(".json")
    return int(number) if key.endswith(".json") and number.isdigit() else None


class ObjectManifest(Manifest):
    def __init__(self, lake: ObjectLake) -> None:
        super().__init__()
        self.lake = lake
        self._read_up_to = ""  # the last event key parsed
        self._appended = ""  # the last event key this process created (appends list only what is newer)

    def describe(self) -> str:
        return self.lake.uri(MANIFEST_EVENTS)

    def written(self) -> bool:
        return bool(self.lake.list_after(MANIFEST_EVENTS, limit=1))

    def append(self, event: ManifestEvent) -> None:
        body = event.model_dump_json().encode()
        last = max(self._read_up_to, self._appended)
        for attempt in range(MAX_ATTEMPTS):
            newer = [k for k in self.lake.list_after(MANIFEST_EVENTS, last) if _sequence(k) is not None]
            last = newer[-1] if newer else last
            sequence = (_sequence(last) or 0) + 1
            self.lake.leases.assert_held(event.stage, event.chunk_id)  # before every try: time passes here
            if self.lake.create(f"{MANIFEST_EVENTS}/{event_key(sequence)}", body):
                self._appended = event_key(sequence)
                return
            pause = random.uniform(0, min(1.0, 0.02 * 2 ** attempt))
            log.debug("manifest event %d was taken by another writer; backing off %.3f s", sequence, pause)
            time.sleep(pause)
        raise TransientError(f"manifest {self.describe()}: lost the race for a sequence number {MAX_ATTEMPTS} "
                             f"times; event for chunk {event.chunk_id} not recorded")

    def _read_new(self) -> list[ManifestEvent]:
        """Events created since the last read, in order; an object that is not an event (something else
        written under manifest/events/) is skipped with a warning, as a torn line is locally."""
        keys = self.lake.list_after(MANIFEST_EVENTS, self._read_up_to)
        bodies = self.lake.read_many([f"{MANIFEST_EVENTS}/{k}" for k in keys if _sequence(k) is not None])
        events = []
        for key in keys:
            body = bodies.get(f"{MANIFEST_EVENTS}/{key}")
            try:
                events.append(ManifestEvent.model_validate_json(body or b""))
            except ValidationError:
                log.warning("manifest object %s/%s is not an event; skipped", self.describe(), key)
        if keys:
            self._read_up_to = keys[-1]
        return events
