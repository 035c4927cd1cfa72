"""Where everything lives in the lake. Partition folders use key=value names so DuckDB's
hive_partitioning reads them as columns.

    <root>/manifest/events.jsonl                                   append-only manifest log
    <root>/raw/dataset=<D>/schema=<S>/<chunk_id>.<sha8>.dbn.zst      vendor bytes, exactly as received
    <root>/raw/dataset=<D>/schema=<S>/<chunk_id>.<sha8>.symbology.json  instrument id -> raw symbol, for
                                                                    parent and continuous requests
    <root>/standardized/table=<T>/dataset=<D>/<chunk_id>.<sha8>.parquet
    <root>/quarantine/table=<T>/dataset=<D>/<chunk_id>.<sha8>.parquet
    <root>/locks/<stage>/<chunk_id>.lock                           who is working on a chunk now
    <root>/tmp/                                                    in-flight downloads and writes

Committed files are never overwritten: a new version of a chunk gets a new name (its hash differs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lake.formats import ChunkSpec, FileRole, Stage


@dataclass(frozen=True)
class LakePaths:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest" / "events.jsonl"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def lock(self, stage: Stage, chunk_id: str) -> Path:
        return self.root / "locks" / stage / f"{chunk_id}.lock"

    def raw(self, chunk: ChunkSpec, sha256: str, suffix: str = ".dbn.zst") -> Path:
        return (self.root / "raw" / f"dataset={chunk.dataset}" / f"schema={chunk.source_schema}"
                / f"{chunk.chunk_id}.{sha256[:8]}{suffix}")

    def table_file(self, role: FileRole, table: str, chunk: ChunkSpec, sha256: str) -> Path:
        area = "standardized" if role == "standardized" else "quarantine"
        return (self.root / area / f"table={table}" / f"dataset={chunk.dataset}"
                / f"{chunk.chunk_id}.{sha256[:8]}.parquet")

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def ensure(self) -> None:
        for sub in ("manifest", "raw", "standardized", "quarantine", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
