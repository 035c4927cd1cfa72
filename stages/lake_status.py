"""`hist lake status`: what each stage has committed or failed, read from the manifest (and, when a
database is configured, from the load ledger)."""

from __future__ import annotations

from rich.table import Table

from lake.manifest import Manifest
from lake.paths import LakePaths
from schemas.secrets import Secret


def lake_status_table(paths: LakePaths, database_url: str | None) -> Table:
    manifest = Manifest(paths)
    table = Table(title=f"lake {paths.root}")
    for column in ("stage", "chunks", "records", "bytes", "failed"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, count_key in (("extract", "records"), ("transform", "standardized")):
        committed = manifest.latest(stage)  # type: ignore[arg-type]
        failed = manifest.latest(stage, "failed")  # type: ignore[arg-type]
        still_failed = [c for c, e in failed.items() if c not in committed
                        or committed[c].created_at < e.created_at]
        records = sum(e.records.get(count_key, 0) for e in committed.values())
        size = sum(f.bytes for e in committed.values() for f in e.files)
        table.add_row(stage, str(len(committed)), f"{records:,}", f"{size:,}", str(len(still_failed)))
    if database_url:
        from stages.load.database import connect

        with connect(Secret(database_url), attempts=1) as conn:
            exists = conn.execute("SELECT to_regclass('hist_chunk_loads')").fetchone()
            loads = conn.execute("SELECT count(*), coalesce(sum(rows_loaded), 0) FROM hist_chunk_loads"
                                 ).fetchone() if exists and exists[0] else (0, 0)
        table.add_row("load", str(loads[0]), f"{loads[1]:,}", "", "")  # type: ignore[index]
    return table
