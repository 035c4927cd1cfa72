"""`hist lake status`: per stage, what is committed (chunks, records, bytes), what waits for it (lag:
chunks and the age of the oldest), and what failed — from the manifest and, when a database is
configured, the load ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from lake.formats import ManifestEvent
from lake.manifest import Manifest
from lake.paths import LakePaths
from schemas.secrets import Secret


def _age(events: list[ManifestEvent]) -> str:
    if not events:
        return ""
    seconds = (datetime.now(UTC) - min(e.created_at for e in events)).total_seconds()
    return f"{seconds:,.0f}s" if seconds < 3600 else f"{seconds / 3600:,.1f}h"


def _still_failed(committed: dict[str, ManifestEvent], failed: dict[str, ManifestEvent]) -> int:
    return sum(1 for c, e in failed.items() if c not in committed or committed[c].created_at < e.created_at)


def lake_status_table(paths: LakePaths, database_url: str | None) -> Table:
    manifest = Manifest(paths)
    extracted, transformed = manifest.latest("extract"), manifest.latest("transform")
    table = Table(title=f"lake {paths.root}")
    for column in ("stage", "chunks", "records", "bytes", "waiting", "oldest waiting", "failed"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    raw_bytes = sum(f.bytes for e in extracted.values() for f in e.files)
    table.add_row("extract", str(len(extracted)), f"{sum(e.records.get('records', 0) for e in extracted.values()):,}",
                  f"{raw_bytes:,}", "", "", str(_still_failed(extracted, manifest.latest("extract", "failed"))))
    waiting = [e for c, e in extracted.items()
               if c not in transformed or not {f.sha256 for f in e.files if f.role == "raw"}
               <= set(transformed[c].input_sha256)]
    table.add_row("transform", str(len(transformed)),
                  f"{sum(e.records.get('standardized', 0) for e in transformed.values()):,}",
                  f"{sum(f.bytes for e in transformed.values() for f in e.files):,}", str(len(waiting)), _age(waiting),
                  str(_still_failed(transformed, manifest.latest("transform", "failed"))))
    if database_url:
        from stages.load.database import connect

        with connect(Secret(database_url), attempts=1) as conn:
            exists = conn.execute("SELECT to_regclass('hist_chunk_loads')").fetchone()
            ledger: dict[str, str] = dict(conn.execute("SELECT chunk_id, source_sha256 FROM hist_chunk_loads"
                                                       ).fetchall()) if exists and exists[0] else {}
            rows = conn.execute("SELECT coalesce(sum(rows_loaded), 0) FROM hist_chunk_loads").fetchone(
                )[0] if ledger else 0  # type: ignore[index]
        unloaded = [e for c, e in transformed.items() if ledger.get(c) != e.standardized_sha256]
        table.add_row("load", str(len(ledger)), f"{rows:,}", "", str(len(unloaded)), _age(unloaded), "")
    return table
