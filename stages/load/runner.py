"""Load every transformed chunk whose current standardized file is not yet in the database."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from lake.errors import ChunkFailed
from lake.formats import ManifestEvent
from lake.manifest import Manifest
from lake.storage import Lake
from schemas.mappings import MappingConfig
from schemas.secrets import Secret
from stages.load.database import connect
from stages.load.loader import LoadResult, TimescaleLoader
from stages.load.migrations import migrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSettings:
    lake: Lake
    mapping: MappingConfig
    dsn: Secret
    batch_rows: int = 100_000
    workers: int = 2


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    errors: list[Exception] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def absorb(self, other: LoadReport) -> None:
        """Add another run's outcome (ingest loads in several passes)."""
        self.loaded += other.loaded
        self.replaced += other.replaced
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.rows += other.rows


def pending(manifest: Manifest, conn: psycopg.Connection, chunk_ids: set[str] | None = None
            ) -> list[ManifestEvent]:
    loaded: dict[str, str] = dict(conn.execute("SELECT chunk_id, source_sha256 FROM hist_chunk_loads").fetchall())
    todo = []
    for chunk_id, event in manifest.latest("transform").items():
        if chunk_ids is not None and chunk_id not in chunk_ids:
            continue
        if loaded.get(chunk_id) != event.standardized_sha256:
            todo.append(event)
    return todo


def run_load(settings: LoadSettings, chunk_ids: set[str] | None = None, *,
             should_stop: Callable[[], bool] = lambda: False,
             on_chunk: Callable[[LoadResult], None] | None = None) -> LoadReport:
    """Load pending chunks with `settings.workers` connections in parallel (COPY into a hypertable is
    bound by the server's CPU, so two streams use both cores). `should_stop` is asked between
    chunks, so a signal lets the chunks in hand commit."""
    manifest = settings.lake.manifest()
    report = LoadReport()
    with connect(settings.dsn) as conn:
        migrate(conn)
        todo: queue.SimpleQueue[ManifestEvent] = queue.SimpleQueue()
        for event in pending(manifest, conn, chunk_ids):
            todo.put(event)
    log.info("load started: %d chunks pending", todo.qsize(),
             extra={"event": "stage_started", "stage": "load", "chunks": todo.qsize()})
    workers = [threading.Thread(target=_worker, args=(settings, todo, report, should_stop, on_chunk),
                                name=f"load-{i}")
               for i in range(settings.workers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if report.errors:
        raise report.errors[0]
    log.info("load finished: %d loaded, %d replaced, %d failed, %d rows", len(report.loaded), len(report.replaced),
             len(report.failed), report.rows,
             extra={"event": "stage_finished", "stage": "load", "chunks": len(report.loaded) + len(report.replaced),
                    "failed": len(report.failed), "rows": report.rows})
    return report


def _worker(settings: LoadSettings, todo: queue.SimpleQueue[ManifestEvent], report: LoadReport,
            should_stop: Callable[[], bool], on_chunk: Callable[[LoadResult], None] | None) -> None:
    try:
        with connect(settings.dsn) as conn:
            loader = TimescaleLoader(conn, settings.lake, settings.mapping, settings.batch_rows)
            while not should_stop():
                try:
                    event = todo.get_nowait()
                except queue.Empty:
                    return
                result = _load_one(loader, settings.lake, event, report)
                if result and on_chunk:
                    on_chunk(result)
    except Exception as exc:  # surfaced by run_load in the calling thread
        with report.lock:
            report.errors.append(exc)


def _load_one(loader: TimescaleLoader, lake: Lake, event: ManifestEvent, report: LoadReport
              ) -> LoadResult | None:
    with lake.lock("load", event.chunk_id) as locked:
        if not locked:
            result = LoadResult(event.chunk_id, 0, "skipped")
        else:
            try:
                result = loader.load_chunk(event)
            except (psycopg.DataError, psycopg.IntegrityError, OSError) as exc:
                failure = ChunkFailed(event.chunk_id, "load", f"{type(exc).__name__}: {exc}".splitlines()[0])
                log.error("%s", failure, extra={"event": "chunk_failed", "stage": "load", "chunk_id": event.chunk_id})
                with report.lock:
                    report.failed[event.chunk_id] = failure.reason
                return None
    with report.lock:
        getattr(report, result.action).append(event.chunk_id)
        report.rows += result.rows
    return result
