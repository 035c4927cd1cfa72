"""Transform every extracted chunk that has no transform of its current raw file yet."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa
from databento import DBNStore

from lake.commit import commit_into_lake
from lake.errors import ChunkFailed
from lake.formats import FileRef, ManifestEvent
from lake.locks import try_lock
from lake.manifest import Manifest
from lake.paths import LakePaths
from lake.scratch import chunk_scratch
from schemas.mappings import MappingConfig, Rules
from stages.transform.decode import RawSymbols, day_ns, iter_batches, open_store, symbology_table
from stages.transform.rule_engine import RuleEngine, sql_literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransformSettings:
    paths: LakePaths
    mapping: MappingConfig
    rules: Rules
    rules_version: str
    batch_records: int = 1_000_000
    duckdb_memory_limit: str = "768MB"
    duckdb_threads: int = 2


@dataclass
class TransformReport:
    transformed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=lambda: {"in": 0, "standardized": 0, "quarantined": 0})


def pending(manifest: Manifest, rules_version: str, chunk_ids: set[str] | None = None, *,
            retry_failed: bool = False, redo: frozenset[str] = frozenset()) -> list[ManifestEvent]:
    """Extracted chunks whose current raw file has no committed transform, plus those in `redo`.
    A chunk that failed on this raw file and these rules is not retried unless `retry_failed`
    (a corrupt file fails the same way every time; watch mode must not loop on it)."""
    transformed = manifest.latest("transform")
    failed = manifest.latest("transform", "failed")
    todo = []
    for chunk_id, extracted in manifest.latest("extract").items():
        if chunk_ids is not None and chunk_id not in chunk_ids:
            continue
        inputs = _inputs(extracted)
        done, failure = transformed.get(chunk_id), failed.get(chunk_id)
        if chunk_id not in redo and done is not None and set(inputs) <= set(done.input_sha256):
            continue
        if (chunk_id not in redo and not retry_failed and failure is not None
                and failure.input_sha256 == inputs and failure.rules_version == rules_version
                and (done is None or failure.created_at > done.created_at)):
            continue
        todo.append(extracted)
    return todo


def run_transform(settings: TransformSettings, chunk_ids: set[str] | None = None, *, retry_failed: bool = False,
                  redo: frozenset[str] = frozenset(), should_stop: Callable[[], bool] = lambda: False,
                  on_chunk: Callable[[ManifestEvent], None] | None = None) -> TransformReport:
    """Transform pending chunks one by one; `should_stop` is asked between chunks (a signal lets the
    chunk in hand finish)."""
    manifest = Manifest(settings.paths)
    report = TransformReport()
    for extracted in pending(manifest, settings.rules_version, chunk_ids, retry_failed=retry_failed, redo=redo):
        if should_stop():
            break
        chunk_id = extracted.chunk_id
        with try_lock(settings.paths.lock("transform", chunk_id)) as locked:
            still_pending = chunk_id in redo or extracted in pending(
                manifest, settings.rules_version, {chunk_id}, retry_failed=retry_failed)
            if not locked or not still_pending:
                report.skipped.append(chunk_id)
                continue
            try:
                with chunk_scratch(settings.paths, "transform", chunk_id) as scratch:
                    event = transform_chunk(settings, manifest, extracted, scratch)
            except ChunkFailed as exc:
                manifest.record("transform", extracted.chunk, input_sha256=_inputs(extracted),
                                error=exc.reason, rules_version=settings.rules_version)
                report.failed[chunk_id] = exc.reason
                log.error("%s", exc, extra={"event": "chunk_failed", "stage": "transform", "chunk_id": chunk_id})
                continue
        report.transformed.append(chunk_id)
        for key in report.records:
            report.records[key] += event.records.get(key, 0)
        if on_chunk:
            on_chunk(event)
    return report


def _inputs(extracted: ManifestEvent) -> tuple[str, ...]:
    raw = extracted.file("raw")
    return (raw.sha256,) if raw else ()


def transform_chunk(settings: TransformSettings, manifest: Manifest, extracted: ManifestEvent,
                    scratch: Path) -> ManifestEvent:
    """Transform one chunk, writing in-flight files under `scratch` (the caller holds the chunk's lock)."""
    try:
        return _transform_chunk(settings, manifest, extracted, scratch)
    except duckdb.Error as exc:  # a rule or mapping the data cannot satisfy fails this chunk only
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ChunkFailed(extracted.chunk_id, "transform", reason) from exc


def _transform_chunk(settings: TransformSettings, manifest: Manifest, extracted: ManifestEvent,
                     scratch: Path) -> ManifestEvent:
    chunk = extracted.chunk
    raw = extracted.file("raw")
    if raw is None:
        raise ChunkFailed(chunk.chunk_id, "transform", "the extract event names no raw file")
    raw_path = settings.paths.absolute(raw.path)
    if not raw_path.exists():
        raise ChunkFailed(chunk.chunk_id, "transform", f"raw file {raw.path} is missing from the lake")
    kind = settings.mapping.kind_for(chunk.schema_)
    con = duckdb.connect(config={"memory_limit": settings.duckdb_memory_limit,
                                 "threads": settings.duckdb_threads,
                                 "temp_directory": str(scratch / "duckdb"),
                                 "preserve_insertion_order": False})
    try:
        try:
            store = open_store(raw_path)
            records_in, source_types = _load_source(con, store, settings.batch_records)
            con.register("sym", symbology_table(store, _raw_symbols(settings.paths, extracted)))
        except Exception as exc:  # a corrupt or truncated file fails this chunk only
            raise ChunkFailed(chunk.chunk_id, "transform",
                              f"cannot decode {raw.path}: {type(exc).__name__}: {exc}") from exc
        files: list[FileRef] = []
        counts = {"in": records_in, "standardized": 0, "quarantined": 0}
        if records_in:
            compiled = RuleEngine(settings.mapping, settings.rules).compile(
                chunk.schema_, chunk.dataset, chunk.start_ns, chunk.end_ns, source_types)
            con.execute(f"CREATE TEMP TABLE mapped AS {compiled.mapped}")
            counts["filtered"] = records_in - con.execute("SELECT count(*) FROM mapped").fetchone()[0]  # type: ignore[index]
            con.execute(f"CREATE TEMP TABLE checked AS {compiled.checked}")
            for role, query in (("standardized", compiled.standardized), ("quarantine", compiled.quarantine)):
                temp = scratch / f"{role}.parquet"
                count = con.execute(f"COPY ({query}) TO {sql_literal(str(temp))} (FORMAT parquet,"
                                    " COMPRESSION zstd, ROW_GROUP_SIZE 122880)").fetchone()[0]  # type: ignore[index]
                counts["quarantined" if role == "quarantine" else "standardized"] = count
                if count:
                    files.append(commit_into_lake(settings.paths, temp, role, count,  # type: ignore[arg-type]
                                                  partial(settings.paths.table_file, role, kind.table, chunk)))
            for rule, n in con.execute(compiled.warnings).fetchall():
                counts[f"warn:{rule}"] = int(n)
        event = manifest.record("transform", chunk, files=files, input_sha256=(raw.sha256,),
                                records=counts, rules_version=settings.rules_version)
        log.info("transformed chunk %s: %d in, %d standardized, %d quarantined", chunk.chunk_id,
                 counts["in"], counts["standardized"], counts["quarantined"],
                 extra={"event": "chunk_committed", "stage": "transform", "chunk_id": chunk.chunk_id,
                        "records": counts["in"]})
        if counts["quarantined"]:
            log.warning("chunk %s: %d rows quarantined", chunk.chunk_id, counts["quarantined"],
                        extra={"event": "quarantined", "stage": "transform", "chunk_id": chunk.chunk_id,
                               "rows": counts["quarantined"]})
        return event
    finally:
        con.close()


def _load_source(con: duckdb.DuckDBPyConnection, store: DBNStore, batch_records: int
                 ) -> tuple[int, dict[str, pa.DataType]]:
    """Copy the file's records into the `src` table batch by batch; returns the count and the
    source field types."""
    total = 0
    types: dict[str, pa.DataType] = {}
    for batch in iter_batches(store, batch_records):
        con.register("batch", batch)
        if total == 0:
            con.execute("CREATE TEMP TABLE src AS SELECT * FROM batch")
            types = {field.name: field.type for field in batch.schema}
        else:
            con.execute("INSERT INTO src SELECT * FROM batch")
        con.unregister("batch")
        total += batch.num_rows
    return total, types


def _raw_symbols(paths: LakePaths, extracted: ManifestEvent) -> RawSymbols | None:
    sidecar = extracted.file("symbology")
    if sidecar is None:
        return None
    answer = json.loads(paths.absolute(sidecar.path).read_text())
    return {int(iid): [(day_ns(i["d0"]), day_ns(i["d1"]), i["s"]) for i in intervals]
            for iid, intervals in answer.items()}
