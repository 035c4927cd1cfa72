"""Extract every planned chunk that the lake does not hold yet, several at a time."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from lake.errors import HistError, TerminalError
from lake.formats import ChunkSpec, ManifestEvent
from lake.manifest import Manifest
from lake.scratch import chunk_scratch
from lake.storage import Lake
from lake.workers import chunk_workers, committed_only
from stages.extract.base import BaseAdapter, CostEstimate
from stages.extract.batch import BatchPolicy, deliver_open_jobs, open_jobs, run_batch, split_by_jobs
from stages.extract.delivery import (
    Delivery,
    commit_raw,
    failed,
    keep_download,
    kept_download,
    resolve_and_commit,
)

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
    busy: list[str] = field(default_factory=list)  # held by another process, not done by this run
    reused: list[str] = field(default_factory=list)
    paid: list[str] = field(default_factory=list)  # held by batch jobs submitted before: delivered by them
    failed: dict[str, str] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    planned: int = 0
    estimate: CostEstimate = field(default_factory=CostEstimate)


def run_extract(adapter: BaseAdapter, lake: Lake, chunks: list[ChunkSpec], *, max_concurrency: int = 4,
                force: bool = False, cost: CostPolicy | None = None,
                on_chunk: Callable[[ManifestEvent], None] | None = None,
                batch: BatchPolicy | None = None, scheduler: str | None = None) -> ExtractReport:
    """Fetch and commit each chunk not already committed (all of them with `force`), after the cost
    guard has seen the vendor's estimate: streamed (here, or one task per chunk on the Dask cluster at
    `scheduler`), or through a batch job when `batch` says so."""
    cost, batch = cost or CostPolicy(), batch or BatchPolicy()
    lake.ensure()
    manifest = lake.manifest()
    committed = manifest.latest("extract")
    todo = [c for c in chunks if force or c.chunk_id not in committed]
    report = ExtractReport(skipped=[c.chunk_id for c in chunks if not force and c.chunk_id in committed],
                           planned=len(chunks))
    if not force:
        bought = {e.chunk.source_key: e for e in committed.values()}
        for chunk in (c for c in todo if c.source_key in bought):
            _reuse(manifest, bought[chunk.source_key], chunk, report, record=not cost.dry_run)
        todo = [c for c in todo if c.source_key not in bought]
    jobs = {} if force else open_jobs(manifest)
    paid, todo = split_by_jobs(todo, jobs)  # batch jobs already paid for deliver their part
    report.paid = [c.chunk_id for pieces in paid.values() for c in pieces]
    report.estimate = adapter.estimate(todo) if todo else CostEstimate()
    log.info("extract started: %d chunks planned, %d to download, estimated $%.4f", len(chunks), len(todo),
             report.estimate.usd, extra={"event": "stage_started", "stage": "extract", "chunks": len(todo)})
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
    task = ChunkTask(adapter, lake, force)
    announce = committed_only(on_chunk)
    delivery = Delivery(adapter, lake, manifest, on_chunk)
    with chunk_workers(max_concurrency, "extract", scheduler) as pool:
        resolved = pool.run(partial(resolve_task, task), unresolved, announce)
        outcomes = deliver_open_jobs(delivery, {job_id: jobs[job_id] for job_id in paid}, batch.poll_seconds)
        if todo and batch.applies(report.estimate.bytes):
            outcomes += run_batch(delivery, todo, batch.poll_seconds)
            log.info("extract went through the batch API (%s)", "asked for" if batch.via == "batch" else
                     f"{report.estimate.bytes:,} bytes > {batch.above_bytes:,}",
                     extra={"event": "batch", "stage": "extract"})
        else:
            outcomes += zip((c.chunk_id for c in todo), pool.run(partial(extract_task, task), todo, announce),
                            strict=True)
    for event, outcome in zip(unresolved, resolved, strict=True):
        if isinstance(outcome, str):
            report.failed[event.chunk_id] = outcome
    done_now = manifest.latest("extract") if any(o is None for _, o in outcomes) else {}
    for chunk_id, outcome in outcomes:
        if isinstance(outcome, ManifestEvent):
            report.extracted.append(outcome.chunk_id)
            raw = outcome.file("raw")
            report.records += raw.records if raw else 0
            report.bytes += raw.bytes if raw else 0
        elif outcome is None and chunk_id in done_now:
            report.skipped.append(chunk_id)  # committed by another process meanwhile
        elif outcome is None:
            report.busy.append(chunk_id)
        else:
            report.failed[chunk_id] = outcome
    log.info("extract finished: %d extracted, %d failed", len(report.extracted), len(report.failed),
             extra={"event": "stage_finished", "stage": "extract", "chunks": len(report.extracted),
                    "failed": len(report.failed), "records": report.records})
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


@dataclass(frozen=True)
class ChunkTask:
    """What a chunk task needs, in a form that travels to cluster workers (see lake/workers.py)."""

    adapter: BaseAdapter
    lake: Lake
    force: bool = False

    def delivery(self) -> Delivery:
        return Delivery(self.adapter, self.lake, self.lake.manifest())


def extract_task(task: ChunkTask, chunk: ChunkSpec) -> ManifestEvent | str | None:
    """The committed event, None when another process holds or has just committed the chunk, or the
    failure reason."""
    delivery = task.delivery()
    lake, manifest = delivery.lake, delivery.manifest
    with lake.lock("extract", chunk.chunk_id) as locked:
        if not locked or (not task.force and manifest.newest("extract", chunk.chunk_id) is not None):
            return None
        with chunk_scratch(lake, "extract", chunk.chunk_id) as scratch:
            kept = kept_download(lake, chunk)  # bought by a run whose commit failed
            if kept is None:
                temp = scratch / "download.dbn.zst"
                try:
                    records = delivery.adapter.fetch(chunk, temp)
                except HistError as exc:
                    return failed(manifest, chunk, str(exc))
                kept = keep_download(lake, chunk, temp, records), records
            return commit_raw(delivery, chunk, *kept, scratch)


def resolve_task(task: ChunkTask, committed: ManifestEvent) -> ManifestEvent | str | None:
    """Resolve the raw symbols of a chunk whose bytes are in the lake already (a resolve that failed
    or was interrupted before): no download."""
    delivery = task.delivery()
    with delivery.lake.lock("extract", committed.chunk_id) as locked:
        current = delivery.manifest.newest("extract", committed.chunk_id)
        if not locked or current is None or not current.symbology_pending:
            return None
        with chunk_scratch(delivery.lake, "extract", committed.chunk_id) as scratch:
            return resolve_and_commit(delivery, current, scratch)
