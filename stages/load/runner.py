"""Load every transformed chunk whose current standardized file is not yet in the database."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from lake.errors import ChunkFailed
from lake.formats import ManifestEvent
from lake.locks import try_lock
from lake.manifest import Manifest
from lake.paths import LakePaths
from schemas.mappings import MappingConfig
from schemas.secrets import Secret
from stages.load.database import connect
from stages.load.loader import TimescaleLoader
from stages.load.migrations import migrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSettings:
    paths: LakePaths
    mapping: MappingConfig
    dsn: Secret
    batch_rows: int = 500_000


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0


def pending(manifest: Manifest, conn: psycopg.Connection, chunk_ids: set[str] | None = None
            ) -> list[ManifestEvent]:
    loaded = dict(conn.execute("SELECT chunk_id, source_sha256 FROM hist_chunk_loads").fetchall())
    todo = []
    for chunk_id, event in manifest.latest("transform").items():
        if chunk_ids is not None and chunk_id not in chunk_ids:
            continue
        standardized = event.file("standardized")
        if loaded.get(chunk_id) != (standardized.sha256 if standardized else "empty"):
            todo.append(event)
    return todo


def run_load(settings: LoadSettings, chunk_ids: set[str] | None = None) -> LoadReport:
    manifest = Manifest(settings.paths)
    report = LoadReport()
    with connect(settings.dsn) as conn:
        migrate(conn)
        loader = TimescaleLoader(conn, settings.paths, settings.mapping, settings.batch_rows)
        for event in pending(manifest, conn, chunk_ids):
            with try_lock(settings.paths.lock("load", event.chunk_id)) as locked:
                if not locked:
                    report.skipped.append(event.chunk_id)
                    continue
                try:
                    result = loader.load_chunk(event)
                except (psycopg.DataError, psycopg.IntegrityError, OSError) as exc:
                    failure = ChunkFailed(event.chunk_id, "load", f"{type(exc).__name__}: {exc}")
                    report.failed[event.chunk_id] = failure.reason
                    log.error("%s", failure)
                    continue
            getattr(report, result.action).append(event.chunk_id)
            report.rows += result.rows
    return report
