"""`hist lake status`: per stage, what is committed (chunks, records, bytes), where every record went,
what waits for it (lag: chunks and the age of the oldest; for extract, chunks waiting for their
symbology), what is stale and what failed — from the manifest and, when a database is configured,
the load ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from lake.formats import ManifestEvent
from lake.storage import Lake
from schemas.secrets import Secret


def _age(events: list[ManifestEvent]) -> str:
    if not events:
        return ""
    seconds = (datetime.now(UTC) - min(e.created_at for e in events)).total_seconds()
    return f"{seconds:,.0f}s" if seconds < 3600 else f"{seconds / 3600:,.1f}h"


def _still_failed(committed: dict[str, ManifestEvent], failed: dict[str, ManifestEvent]) -> int:
    return sum(1 for c, e in failed.items() if c not in committed or committed[c].created_at < e.created_at)


# derived bars account in source bars: used in a stored bar, or in a quarantined one
SOURCE_TERMS = {"standardized": "source_used", "quarantined": "source_quarantined"}


def lake_status(lake: Lake, database_url: str | None, rules_version: str) -> pa.Table:
    """One row per stage: what is committed, what waits for it and what failed. The transform row
    accounts for every record in: standardized + quarantined + filtered + duplicates (source bars,
    for derived bars); `stale`
    counts chunks transformed under another mapping or rules version than `rules_version` (see
    `hist rederive`). Counts a stage does not have are null."""
    manifest = lake.manifest()
    extracted, transformed = manifest.latest("extract"), manifest.latest("transform")

    def total(events: dict[str, ManifestEvent], key: str, fallback: str = "") -> int:
        return sum(e.records.get(key, e.records.get(fallback, 0)) for e in events.values())

    waiting = [e for c, e in extracted.items() if not e.symbology_pending and (
        c not in transformed or not {f.sha256 for f in e.files if f.role == "raw"} <= set(transformed[c].input_sha256))]
    rows: list[dict[str, object]] = [
        {"stage": "extract", "chunks": len(extracted), "records": total(extracted, "records"),
         "bytes": sum(f.bytes for e in extracted.values() for f in e.files),
         "waiting": sum(1 for e in extracted.values() if e.symbology_pending),
         "failed": _still_failed(extracted, manifest.latest("extract", "failed"))},
        {"stage": "transform", "chunks": len(transformed), "records": total(transformed, "in"),
         **{key: total(transformed, SOURCE_TERMS.get(key, key), key)
            for key in ("standardized", "quarantined", "filtered", "duplicates")},
         "bytes": sum(f.bytes for e in transformed.values() for f in e.files), "waiting": len(waiting),
         "oldest_waiting": _age(waiting),
         "stale": sum(1 for e in transformed.values() if e.rules_version != rules_version),
         "failed": _still_failed(transformed, manifest.latest("transform", "failed"))},
    ]
    if database_url:
        from stages.load.database import connect

        with connect(Secret(database_url), attempts=1) as conn:
            exists = conn.execute("SELECT to_regclass('hist_chunk_loads')").fetchone()
            ledger: dict[str, str] = dict(conn.execute("SELECT chunk_id, source_sha256 FROM hist_chunk_loads"
                                                       ).fetchall()) if exists and exists[0] else {}
            loaded = conn.execute("SELECT coalesce(sum(rows_loaded), 0) FROM hist_chunk_loads").fetchone(
                )[0] if ledger else 0  # type: ignore[index]
        unloaded = [e for c, e in transformed.items() if ledger.get(c) != e.standardized_sha256]
        rows.append({"stage": "load", "chunks": len(ledger), "records": int(loaded), "waiting": len(unloaded),
                     "oldest_waiting": _age(unloaded)})
    return pa.Table.from_pylist(rows, schema=STATUS_SCHEMA)


STATUS_SCHEMA = pa.schema([("stage", pa.string()), *((name, pa.int64()) for name in (
    "chunks", "records", "standardized", "quarantined", "filtered", "duplicates", "bytes", "waiting")),
    ("oldest_waiting", pa.string()), ("stale", pa.int64()), ("failed", pa.int64())])
