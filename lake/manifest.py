"""The append-only manifest: one event per stage commit or failure, the lake's system of record.

`Manifest` reads and records events; where they are kept is up to the lake. `JsonlManifest` is a local
lake's log, one JSON line per event.
Appends hold an exclusive flock and end with fsync, so concurrent stage processes never interleave.
A line torn by a crash is skipped by readers (and sealed with a newline by the next writer), so it
never stops anyone from reading the rest. DuckDB reads it with
`read_json('manifest/events.jsonl', format='newline_delimited', ignore_errors=true)`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from lake.formats import ChunkSpec, FileRef, ManifestEvent, Stage

log = logging.getLogger(__name__)


class Manifest(ABC):
    def __init__(self) -> None:
        self._events: list[ManifestEvent] = []
        self._latest: dict[tuple[Stage, str], dict[str, ManifestEvent]] = {}  # (stage, status) -> chunk -> newest
        self._read_lock = threading.Lock()

    @abstractmethod
    def append(self, event: ManifestEvent) -> None:
        """Make one event durable and visible to every reader, after all events already visible."""

    @abstractmethod
    def _read_new(self) -> list[ManifestEvent]:
        """Events that became visible since the last call (called under the read lock)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the events are, for people."""

    @abstractmethod
    def written(self) -> bool:
        """False for a lake nothing has been recorded in yet."""

    def duckdb_source(self, con: duckdb.DuckDBPyConnection) -> str:
        """A table expression for every event in the DuckDB session `con`: by default the events read
        here, as Arrow (one schema for all of them, whatever keys each event's counts have)."""
        con.register("manifest_events", pa.Table.from_pylist([e.model_dump() for e in self.events()]))
        return "manifest_events"

    def record(
        self,
        stage: Stage,
        chunk: ChunkSpec,
        *,
        files: Sequence[FileRef] = (),
        input_sha256: Sequence[str] = (),
        records: dict[str, int] | None = None,
        rules_version: str | None = None,
        error: str | None = None,
        symbology_pending: bool = False,
        batch_job: str | None = None,
    ) -> ManifestEvent:
        event = ManifestEvent(
            event_id=uuid.uuid4().hex,
            stage=stage,
            status="failed" if error else "submitted" if batch_job and not files else "committed",
            chunk_id=chunk.chunk_id,
            chunk=chunk,
            files=tuple(files),
            input_sha256=tuple(input_sha256),
            records=records or {},
            rules_version=rules_version,
            error=error,
            symbology_pending=symbology_pending,
            batch_job=batch_job,
            lease=self._lease(stage, chunk.chunk_id),
            created_at=datetime.now(UTC),
        )
        self.append(event)
        return event

    def _lease(self, stage: Stage, chunk_id: str) -> int | None:
        """The lease this process holds the chunk under, where leases exist (an object-store lake)."""
        return None

    def local_file(self) -> Path | None:
        """The file holding the events, where they are in one local file (to watch it)."""
        return None

    def events(self) -> Iterator[ManifestEvent]:
        """Every readable event, in order."""
        with self._read_lock:
            self._catch_up()
            snapshot = list(self._events)
        yield from snapshot

    def latest(self, stage: Stage, status: str = "committed") -> dict[str, ManifestEvent]:
        """The newest event of one stage and status per chunk id, in log order: a copy of the index kept
        as events are read, so a call costs the chunks of that stage and status, not the whole log."""
        with self._read_lock:
            self._catch_up()
            return dict(self._latest.get((stage, status), {}))

    def newest(self, stage: Stage, chunk_id: str, status: str = "committed") -> ManifestEvent | None:
        """The newest event of one stage and status for one chunk: what a chunk task asks before it
        works, at a cost that does not grow with the lake."""
        with self._read_lock:
            self._catch_up()
            return self._latest.get((stage, status), {}).get(chunk_id)

    def _catch_up(self) -> None:
        """Read and index the new events (under the read lock)."""
        new = self._read_new()  # may start over (a replaced log) before adding to what was read
        self._events.extend(new)
        for event in new:
            self._latest.setdefault((event.stage, event.status), {})[event.chunk_id] = event

    def _forget(self) -> None:
        """Drop what was read and its index: the log was replaced and is read again from its start."""
        self._events = []
        self._latest = {}


class JsonlManifest(Manifest):
    """A local lake's manifest: one JSON line per event in one file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._offset = 0  # bytes of the log already parsed: it only grows, so rereads are incremental
        self._lines = 0
        self._identity: tuple[int, int] | None = None

    def _restart(self, identity: tuple[int, int]) -> None:
        self._forget()
        self._offset = self._lines = 0
        self._identity = identity

    def describe(self) -> str:
        return str(self.path)

    def local_file(self) -> Path | None:
        return self.path

    def written(self) -> bool:
        return self.path.exists()

    def duckdb_source(self, con: duckdb.DuckDBPyConnection) -> str:
        """The log itself, as a plain DuckDB session reads it (see the README)."""
        quoted = str(self.path).replace("'", "''")
        return f"read_json('{quoted}', format='newline_delimited', ignore_errors=true)"

    def append(self, event: ManifestEvent) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (event.model_dump_json() + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # seal a line torn by a crashed writer
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_new(self) -> list[ManifestEvent]:
        """Only complete lines are parsed; an unterminated last line (a writer died mid-append, or is
        appending now) is left for the next read."""
        new: list[ManifestEvent] = []
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as fh:
            identity = os.fstat(fh.fileno())
            if (identity.st_dev, identity.st_ino) != self._identity or identity.st_size < self._offset:
                self._restart((identity.st_dev, identity.st_ino))  # the lake was wiped and begun anew
            fh.seek(self._offset)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                self._offset += len(raw)
                self._lines += 1
                if not raw.strip():
                    continue
                try:
                    new.append(ManifestEvent.model_validate_json(raw))
                except ValidationError:
                    log.warning("manifest %s line %d is torn or unreadable; skipped", self.path, self._lines)
        return new
