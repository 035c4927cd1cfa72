"""Extract every planned chunk that the lake does not hold yet, several at a time."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lake.commit import commit_into_lake
from lake.errors import HistError, TerminalError
from lake.formats import ChunkSpec, ManifestEvent
from lake.locks import try_lock
from lake.manifest import Manifest
from lake.paths import LakePaths
from lake.scratch import chunk_scratch
from stages.extract.base import BaseAdapter, CostEstimate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CostPolicy:
    """The money guard: the estimate is always asked for before downloading; above `max_cost_usd`
    nothing is downloaded unless `accept` (--yes); `dry_run` downloads nothing at all."""

    max_cost_usd: float | None = None
    accept: bool = False
    dry_run: bool = False


class CostLimitExceeded(TerminalError):
    pass


@dataclass
class ExtractReport:
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    planned: int = 0
    estimate: CostEstimate = field(default_factory=CostEstimate)


def run_extract(adapter: BaseAdapter, paths: LakePaths, chunks: list[ChunkSpec], *, max_concurrency: int = 4,
                force: bool = False, cost: CostPolicy | None = None,
                on_chunk: Callable[[ManifestEvent], None] | None = None) -> ExtractReport:
    """Fetch and commit each chunk not already committed (all of them with `force`), after the cost
    guard has seen the vendor's estimate."""
    cost = cost or CostPolicy()
    paths.ensure()
    manifest = Manifest(paths)
    committed = manifest.latest("extract")
    todo = [c for c in chunks if force or c.chunk_id not in committed]
    report = ExtractReport(skipped=[c.chunk_id for c in chunks if not force and c.chunk_id in committed],
                           planned=len(chunks))
    if not force:
        bought = {e.chunk.source_key: e for e in committed.values()}
        for chunk in (c for c in todo if c.source_key in bought):
            _reuse(manifest, bought[chunk.source_key], chunk, report, record=not cost.dry_run)
        todo = [c for c in todo if c.source_key not in bought]
    report.estimate = adapter.estimate(todo) if todo else CostEstimate()
    log.info("extract started: %d chunks planned, %d to download, estimated $%.4f", len(chunks), len(todo),
             report.estimate.usd, extra={"event": "stage_started", "stage": "extract"})
    if cost.dry_run:
        return report
    limit = cost.max_cost_usd
    if limit is not None and report.estimate.usd > limit and not cost.accept:
        raise CostLimitExceeded(
            f"estimated cost ${report.estimate.usd:,.4f} for {len(todo)} chunks exceeds max_cost_usd "
            f"${limit:,.4f}; nothing was downloaded (rerun with --yes to accept, or --dry-run to see the plan)")
    current = manifest.latest("extract")  # with the reused chunks
    unresolved = [] if force else [current[c.chunk_id] for c in chunks
                                   if c.chunk_id in current and current[c.chunk_id].symbology_pending]
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="extract") as pool:
        resolved = list(pool.map(lambda e: _resolve_one(adapter, paths, manifest, e, on_chunk), unresolved))
        outcomes = list(pool.map(lambda c: _extract_one(adapter, paths, manifest, c, force, on_chunk), todo))
    for event, outcome in zip(unresolved, resolved, strict=True):
        if isinstance(outcome, str):
            report.failed[event.chunk_id] = outcome
    for chunk, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, ManifestEvent):
            report.extracted.append(chunk.chunk_id)
            raw = outcome.file("raw")
            report.records += raw.records if raw else 0
            report.bytes += raw.bytes if raw else 0
        elif outcome is None:
            report.skipped.append(chunk.chunk_id)
        else:
            report.failed[chunk.chunk_id] = outcome
    log.info("extract finished: %d extracted, %d failed", len(report.extracted), len(report.failed),
             extra={"event": "stage_finished", "stage": "extract"})
    return report


def _reuse(manifest: Manifest, bought: ManifestEvent, chunk: ChunkSpec, report: ExtractReport,
           record: bool) -> None:
    """Bytes bought already for another schema of the same request (ohlcv-1m for ohlcv-5m) are
    recorded for this chunk too instead of being downloaded again (a dry run only counts them)."""
    report.reused.append(chunk.chunk_id)
    if not record:
        return
    manifest.record("extract", chunk, files=bought.files, records=bought.records,
                    symbology_pending=bought.symbology_pending)
    log.info("chunk %s reuses the raw file of chunk %s", chunk.chunk_id, bought.chunk_id,
             extra={"event": "chunk_committed", "stage": "extract", "chunk_id": chunk.chunk_id})


def _extract_one(adapter: BaseAdapter, paths: LakePaths, manifest: Manifest, chunk: ChunkSpec, force: bool,
                 on_chunk: Callable[[ManifestEvent], None] | None) -> ManifestEvent | str | None:
    """The committed event, None when another process holds or has just committed the chunk, or the
    failure reason."""
    with try_lock(paths.lock("extract", chunk.chunk_id)) as locked:
        if not locked or (not force and chunk.chunk_id in manifest.latest("extract")):
            return None
        with chunk_scratch(paths, "extract", chunk.chunk_id) as scratch:
            return _fetch_and_commit(adapter, paths, manifest, chunk, scratch, on_chunk)


def _resolve_one(adapter: BaseAdapter, paths: LakePaths, manifest: Manifest, committed: ManifestEvent,
                 on_chunk: Callable[[ManifestEvent], None] | None) -> ManifestEvent | str | None:
    """Resolve the raw symbols of a chunk whose bytes are in the lake already (a resolve that failed
    or was interrupted before): no download."""
    with try_lock(paths.lock("extract", committed.chunk_id)) as locked:
        current = manifest.latest("extract").get(committed.chunk_id)
        if not locked or current is None or not current.symbology_pending:
            return None
        with chunk_scratch(paths, "extract", committed.chunk_id) as scratch:
            return _resolve_and_commit(adapter, paths, manifest, current, scratch, on_chunk)


def _fetch_and_commit(adapter: BaseAdapter, paths: LakePaths, manifest: Manifest, chunk: ChunkSpec, scratch: Path,
                      on_chunk: Callable[[ManifestEvent], None] | None) -> ManifestEvent | str:
    """Download and commit the raw bytes first, so that whatever follows (symbology) never makes the
    next run pay for them again."""
    temp = scratch / "download.dbn.zst"
    try:
        records = adapter.fetch(chunk, temp)
        raw = commit_into_lake(paths, temp, "raw", records, lambda sha: paths.raw(chunk, sha))
    except HistError as exc:
        return _failed(manifest, chunk, str(exc))
    pending = adapter.needs_raw_symbols(chunk)
    event = manifest.record("extract", chunk, files=[raw], records={"records": records}, symbology_pending=pending)
    log.info("extracted chunk %s: %d records, %d bytes", chunk.chunk_id, records, raw.bytes,
             extra={"event": "chunk_committed", "stage": "extract", "chunk_id": chunk.chunk_id, "records": records})
    if pending:
        return _resolve_and_commit(adapter, paths, manifest, event, scratch, on_chunk)
    if on_chunk:
        on_chunk(event)
    return event


def _resolve_and_commit(adapter: BaseAdapter, paths: LakePaths, manifest: Manifest, extracted: ManifestEvent,
                        scratch: Path, on_chunk: Callable[[ManifestEvent], None] | None) -> ManifestEvent | str:
    chunk, raw = extracted.chunk, extracted.file("raw")
    assert raw is not None
    sidecar = scratch / "symbology.json"
    try:
        raw_symbols = adapter.raw_symbols(chunk, paths.absolute(raw.path))
        sidecar.write_text(json.dumps(raw_symbols, sort_keys=True))
        symbology = commit_into_lake(paths, sidecar, "symbology", len(raw_symbols),
                                     lambda sha: paths.raw(chunk, sha, ".symbology.json"))
    except HistError as exc:
        return _failed(manifest, chunk, f"symbology.resolve: {exc} (the raw bytes are in the lake: a rerun "
                                        "resolves again without downloading)")
    event = manifest.record("extract", chunk, files=[raw, symbology], records=extracted.records)
    log.info("resolved the raw symbols of %d instruments for chunk %s", len(raw_symbols), chunk.chunk_id,
             extra={"event": "chunk_committed", "stage": "extract", "chunk_id": chunk.chunk_id})
    if on_chunk:
        on_chunk(event)
    return event


def _failed(manifest: Manifest, chunk: ChunkSpec, reason: str) -> str:
    manifest.record("extract", chunk, error=reason)
    log.error("extract failed for chunk %s: %s", chunk.chunk_id, reason,
              extra={"event": "chunk_failed", "stage": "extract", "chunk_id": chunk.chunk_id})
    return reason
