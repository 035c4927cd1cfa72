"""Transform every extracted chunk that has no transform of its current raw file yet."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
from databento import DBNStore

from lake.errors import ChunkFailed
from lake.formats import FileRef, ManifestEvent
from lake.manifest import Manifest
from lake.paths import table_key
from lake.scratch import chunk_scratch
from lake.storage import Lake
from lake.workers import chunk_workers, committed_only
from schemas.mappings import MappingConfig, Rules
from stages.transform.decode import RawSymbols, day_ns, iter_batches, open_store, symbology_table
from stages.transform.rule_engine import RuleEngine, sql_literal, utc_connection

log = logging.getLogger(__name__)
ACCOUNTS = ("in", "standardized", "quarantined", "filtered", "duplicates")  # in = the other four


@dataclass(frozen=True)
class TransformSettings:
    lake: Lake
    mapping: MappingConfig
    rules: Rules
    rules_version: str
    batch_records: int = 1_000_000
    duckdb_memory_limit: str = "128MB"
    duckdb_threads: int = 2
    parquet_compression_level: int = 1
    shared_budget_records: int = 500_000  # chunks up to this size share the memory budget, larger ones have it alone
    workers: int = 2
    scheduler: str | None = None  # a Dask scheduler: one task per chunk on its cluster


@dataclass
class TransformReport:
    transformed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))

    def absorb(self, other: TransformReport) -> None:
        """Add another run's outcome (ingest transforms in several passes)."""
        self.transformed += other.transformed
        self.skipped += other.skipped
        self.failed.update(other.failed)
        for key, n in other.records.items():
            self.records[key] = self.records.get(key, 0) + n


def pending(manifest: Manifest, rules_version: str, chunk_ids: set[str] | None = None, *,
            retry_failed: bool = False, redo: frozenset[str] = frozenset()) -> list[ManifestEvent]:
    """Extracted chunks whose current raw file has no committed transform, plus those in `redo`
    (chunks still waiting for their raw symbols are not ready)."""
    transformed = manifest.latest("transform")
    failed = manifest.latest("transform", "failed")
    return [extracted for chunk_id, extracted in manifest.latest("extract").items()
            if (chunk_ids is None or chunk_id in chunk_ids)
            and _waiting(extracted, transformed.get(chunk_id), failed.get(chunk_id), rules_version,
                         retry_failed or chunk_id in redo, chunk_id in redo)]


def _still_pending(manifest: Manifest, extracted: ManifestEvent, rules_version: str, retry_failed: bool) -> bool:
    """`pending` for one chunk, from the manifest's index (a chunk task asks it under the chunk's lock)."""
    chunk_id = extracted.chunk_id
    return manifest.newest("extract", chunk_id) == extracted and _waiting(
        extracted, manifest.newest("transform", chunk_id), manifest.newest("transform", chunk_id, "failed"),
        rules_version, retry_failed, redo=False)


def _waiting(extracted: ManifestEvent, done: ManifestEvent | None, failure: ManifestEvent | None, rules_version: str,
             retry_failed: bool, redo: bool) -> bool:
    """Whether an extracted chunk is to be transformed. One that failed on this raw file and these rules is
    not retried unless `retry_failed` (a corrupt file fails the same way every time; watch mode must not
    loop on it)."""
    if extracted.symbology_pending:
        return False
    inputs = _inputs(extracted)
    if not redo and done is not None and set(inputs) <= set(done.input_sha256):
        return False
    return not (not retry_failed and failure is not None and failure.input_sha256 == inputs
                and failure.rules_version == rules_version and (done is None or failure.created_at > done.created_at))


def run_transform(settings: TransformSettings, chunk_ids: set[str] | None = None, *, retry_failed: bool = False,
                  redo: frozenset[str] = frozenset(), should_stop: Callable[[], bool] = lambda: False,
                  on_chunk: Callable[[ManifestEvent], None] | None = None) -> TransformReport:
    """Transform pending chunks, up to `settings.workers` at a time when they are small enough to share
    the memory budget (DuckDB releases the GIL); `should_stop` is asked before each chunk, so a signal
    lets the chunks in hand finish."""
    manifest = settings.lake.manifest()
    report = TransformReport()
    todo = pending(manifest, settings.rules_version, chunk_ids, retry_failed=retry_failed, redo=redo)
    largest = max((e.records.get("records", 0) for e in todo), default=0)
    # Small chunks overlap their fixed costs; a large one gets the memory budget to itself.
    workers = settings.workers if largest * settings.workers <= settings.shared_budget_records else 1
    log.info("transform started: %d chunks pending", len(todo),
             extra={"event": "stage_started", "stage": "transform", "chunks": len(todo)})
    with chunk_workers(workers, "transform", settings.scheduler) as pool:
        outcomes = pool.run(partial(transform_task, settings, retry_failed, redo), todo, committed_only(on_chunk),
                            should_stop)
    for extracted, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, ManifestEvent):
            report.transformed.append(extracted.chunk_id)
            for key, n in outcome.records.items():
                report.records[key] = report.records.get(key, 0) + n
        elif isinstance(outcome, str):
            report.failed[extracted.chunk_id] = outcome
        elif outcome is None and not should_stop():
            report.skipped.append(extracted.chunk_id)
    log.info("transform finished: %d transformed, %d failed, %d records in", len(report.transformed),
             len(report.failed), report.records["in"],
             extra={"event": "stage_finished", "stage": "transform", "chunks": len(report.transformed),
                    "failed": len(report.failed), "records": report.records["in"]})
    return report


def transform_task(settings: TransformSettings, retry_failed: bool, redo: frozenset[str], extracted: ManifestEvent
                   ) -> ManifestEvent | str | None:
    """The committed event, None when another process has the chunk (or did it already), or the reason
    it failed. Runs in a worker thread here or as a task on the cluster."""
    chunk_id = extracted.chunk_id
    manifest = settings.lake.manifest()
    with settings.lake.lock("transform", chunk_id) as locked:
        if not locked or not (chunk_id in redo or _still_pending(manifest, extracted, settings.rules_version,
                                                                 retry_failed)):
            return None
        try:
            with chunk_scratch(settings.lake, "transform", chunk_id) as scratch:
                return transform_chunk(settings, manifest, extracted, scratch)
        except ChunkFailed as exc:
            manifest.record("transform", extracted.chunk, input_sha256=_inputs(extracted),
                            error=exc.reason, rules_version=settings.rules_version)
            log.error("%s", exc, extra={"event": "chunk_failed", "stage": "transform", "chunk_id": chunk_id})
            return exc.reason


def _inputs(extracted: ManifestEvent) -> tuple[str, ...]:
    """The hashes of the files a transform reads: the raw bytes and, when resolved, their symbology."""
    return tuple(f.sha256 for f in extracted.files if f.role in ("raw", "symbology"))


def stale(manifest: Manifest, rules_version: str) -> set[str]:
    """Chunks whose current transform ran under another mapping or rules version: `hist rederive`
    transforms them again from the raw bytes in the lake."""
    return {chunk_id for chunk_id, done in manifest.latest("transform").items() if done.rules_version != rules_version}


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
    if not settings.lake.exists(raw.path):
        raise ChunkFailed(chunk.chunk_id, "transform", f"raw file {raw.path} is missing from the lake")
    con = utc_connection({"memory_limit": settings.duckdb_memory_limit, "threads": settings.duckdb_threads,
                          "temp_directory": str(scratch / "duckdb"), "preserve_insertion_order": False})
    try:
        counts, files = _run_sql(settings, con, extracted, raw, scratch)
    finally:
        con.close()
    event = manifest.record("transform", chunk, files=files, input_sha256=_inputs(extracted),
                            records=counts, rules_version=settings.rules_version)
    log.info("transformed chunk %s: %d in, %d standardized, %d quarantined, %d filtered, %d duplicates",
             chunk.chunk_id, *(counts[k] for k in ACCOUNTS),
             extra={"event": "chunk_committed", "stage": "transform", "chunk_id": chunk.chunk_id,
                    "records": counts["in"]})
    if counts["quarantined"]:
        log.warning("chunk %s: %d rows quarantined", chunk.chunk_id, counts["quarantined"],
                    extra={"event": "quarantined", "stage": "transform", "chunk_id": chunk.chunk_id,
                           "rows": counts["quarantined"]})
    return event


def _run_sql(settings: TransformSettings, con: duckdb.DuckDBPyConnection, extracted: ManifestEvent, raw: FileRef,
             scratch: Path) -> tuple[dict[str, int], list[FileRef]]:
    """Stream the raw file through the compiled SQL and commit the output partitions."""
    chunk = extracted.chunk
    try:
        store = open_store(settings.lake.local_file(raw.path, scratch))
        source = SourceStream(store, settings.batch_records)
        con.register("sym", symbology_table(store, _raw_symbols(settings.lake, extracted)))
    except Exception as exc:  # a corrupt or truncated file fails this chunk only
        raise _undecodable(chunk.chunk_id, raw, exc) from exc
    counts = dict.fromkeys(ACCOUNTS, 0)
    files: list[FileRef] = []
    if source.first is None:
        return counts, files
    compiled = RuleEngine(settings.mapping, settings.rules).compile(
        chunk.schema_, chunk.dataset, chunk.start_ns, chunk.end_ns, source.types)
    try:
        source.append_to_mapped(con, compiled.rows, compiled.filtered)
    except duckdb.Error:
        raise  # a rule or mapping the data cannot satisfy, not an undecodable file
    except Exception as exc:  # truncated or corrupt past the first batch
        raise _undecodable(chunk.chunk_id, raw, exc) from exc
    for statement in compiled.setup:
        con.execute(statement)
    counts["in"], counts["filtered"] = source.records, source.filtered
    named_filter = settings.mapping.schema_mapping(chunk.schema_).filter
    if named_filter:
        counts[f"filtered:{named_filter.name}"] = source.filtered
    outputs: tuple[tuple[Literal["standardized", "quarantine"], str, str], ...] = (
        ("standardized", "standardized", compiled.standardized), ("quarantine", "quarantined", compiled.quarantine))
    for role, account, query in outputs:
        temp = scratch / f"{role}.parquet"
        counts[account] = _count(con, f"COPY ({query}) TO {sql_literal(str(temp))} (FORMAT parquet, COMPRESSION"
                                      f" zstd, COMPRESSION_LEVEL {settings.parquet_compression_level},"
                                      " ROW_GROUP_SIZE 122880)")
    if compiled.source_counts:
        counts["source_used"], counts["source_quarantined"] = con.execute(compiled.source_counts).fetchone()  # type: ignore[misc]
    for rule, n in con.execute(compiled.warnings).fetchall():
        counts[f"warn:{rule}"] = int(n)
    _check_accounts(chunk.chunk_id, counts)  # before any file is visible in the lake
    table = settings.mapping.kind_for(chunk.schema_).table
    for role, account, _ in outputs:
        if counts[account]:
            files.append(settings.lake.commit(scratch / f"{role}.parquet", role, counts[account],
                                              partial(table_key, role, table, chunk)))
    return counts, files


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    """The one number `query` returns, its result read to the end (DuckDB refuses to unregister a
    relation while a result is unfinished)."""
    (count,), = con.execute(query).fetchall()
    return int(count)


def _check_accounts(chunk_id: str, counts: dict[str, int]) -> None:
    """Every record in is standardized, quarantined, filtered by a named filter or merged as a
    duplicate; for derived bars the source bars are either used or in a quarantined bucket. Each term
    is counted on its own (`in` from the decoded batches, `filtered` from the filter's verdict on
    them, the others from the rows written), so a record lost anywhere else breaks the sum. No step
    merges duplicates (repeated identities stay rows, numbered by dup_ordinal): that term is 0. A chunk
    whose outputs do not add up fails before any of its files is committed."""
    if "source_used" in counts:
        kept, how = counts["source_used"] + counts["source_quarantined"], "source bars used + in quarantined bars"
    else:
        kept, how = counts["standardized"] + counts["quarantined"], "standardized + quarantined"
    if kept + counts["filtered"] + counts["duplicates"] != counts["in"]:
        raise ChunkFailed(chunk_id, "transform", f"records do not add up: {counts['in']} in, but {how} {kept}"
                          f" + filtered {counts['filtered']} + duplicates {counts['duplicates']}")


def _undecodable(chunk_id: str, raw: FileRef, exc: BaseException) -> ChunkFailed:
    return ChunkFailed(chunk_id, "transform", f"cannot decode {raw.path}: {type(exc).__name__}: {exc}")


class SourceStream:
    """The raw file's records, decoded one Arrow batch at a time. Each batch is converted and checked
    as it comes and appended to the `mapped` table, which spills to disk beyond DuckDB's memory limit,
    so a chunk of any size runs in bounded memory and every record is read once."""

    def __init__(self, store: DBNStore, batch_records: int) -> None:
        self._batches = iter_batches(store, batch_records)
        self.first = next(self._batches, None)
        self.types: dict[str, pa.DataType] = {f.name: f.type for f in self.first.schema} if self.first else {}
        self.records = 0
        self.filtered = 0

    def append_to_mapped(self, con: duckdb.DuckDBPyConnection, rows: str, filtered: str | None) -> None:
        """Run `rows` (a SELECT over the relation `batch`) on every batch into the table `mapped`,
        counting the records decoded and those `filtered` (a count over `batch`) says the named filter
        drops: that query reads only the filter's columns of the batch in memory."""
        assert self.first is not None
        for i, batch in enumerate(itertools.chain([self.first], self._batches)):
            self.records += batch.num_rows
            con.register("batch", batch)
            con.execute(f"INSERT INTO mapped {rows}" if i else f"CREATE TEMP TABLE mapped AS {rows}")
            if filtered:
                self.filtered += _count(con, filtered)
            con.unregister("batch")


def _raw_symbols(lake: Lake, extracted: ManifestEvent) -> RawSymbols | None:
    sidecar = extracted.file("symbology")
    if sidecar is None:
        return None
    answer = json.loads(lake.read_bytes(sidecar.path))
    return {int(iid): [(day_ns(i["d0"]), day_ns(i["d1"]), i["s"]) for i in intervals]
            for iid, intervals in answer.items()}
