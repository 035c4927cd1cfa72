"""Where everything lives in the lake, as keys relative to its root (a folder or s3://bucket/prefix).
Partition folders use key=value names so DuckDB's hive_partitioning reads them as columns.

    manifest/events.jsonl                                   the manifest log of a local lake
    manifest/events/<seq>.json                              the manifest of an object-store lake: one
                                                            object per event, created conditionally
    raw/dataset=<D>/schema=<S>/<chunk_id>.<sha8>.dbn.zst      vendor bytes, exactly as received
    raw/dataset=<D>/schema=<S>/<chunk_id>.<sha8>.symbology.json  instrument id -> raw symbol, for
                                                            parent and continuous requests
    standardized/table=<T>/dataset=<D>/<chunk_id>.<sha8>.parquet
    quarantine/table=<T>/dataset=<D>/<chunk_id>.<sha8>.parquet
    leases/<stage>/<chunk_id>/<generation>.json              who works on a chunk (object-store lakes)

Beside them, on local disk (in the lake folder, or HIST_SCRATCH for an object-store lake):

    locks/<stage>/<chunk_id>.lock                           who on this machine works on a chunk now
    tmp/<stage>/<chunk_id>/                                  in-flight downloads and writes

Committed files are never overwritten: a new version of a chunk gets a new name (its hash differs).
"""

from __future__ import annotations

from lake.formats import ChunkSpec, FileRole, Stage

MANIFEST_LOG = "manifest/events.jsonl"
MANIFEST_EVENTS = "manifest/events"
LEASES = "leases"
AREAS = ("manifest", "raw", "standardized", "quarantine")


def raw_key(chunk: ChunkSpec, sha256: str, suffix: str = ".dbn.zst") -> str:
    return f"raw/dataset={chunk.dataset}/schema={chunk.source_schema}/{chunk.chunk_id}.{sha256[:8]}{suffix}"


def table_key(role: FileRole, table: str, chunk: ChunkSpec, sha256: str) -> str:
    area = "standardized" if role == "standardized" else "quarantine"
    return f"{area}/table={table}/dataset={chunk.dataset}/{chunk.chunk_id}.{sha256[:8]}.parquet"


def lease_prefix(stage: Stage, chunk_id: str) -> str:
    return f"{LEASES}/{stage}/{chunk_id}"
