"""Big pulls through Databento's batch API: submit a job, poll it, download its files, and commit
each file as a raw chunk that transform and load handle like any other.

Resumable at every step, never paying twice:
- A job id, once known, is polled until the job is done or expired. It is in the manifest (a
  `submitted` extract event for the request) before the first poll; a failed poll, listing or file
  is recorded with the job id, so the next run polls and downloads from the same job. Only an expired
  job is given up (a failed event for its request without a job id), and the next run submits anew.
- Jobs are found by what they cover, not by the request that made them: a chunk that an open job
  holds (same dataset, schema and symbology, its symbols among the job's, its window inside the job's)
  comes from that job, whatever way this run would fetch it, so a partly delivered job delivers the
  rest of its files (free for 30 days) instead of a new job buying them again.
- Before every submit the adapter looks for a job with the very same parameters (`list_jobs`), so a
  submit whose answer was lost is adopted instead of submitted again.
- Files download into `<scratch>/tmp/batch/<job id>/`, which survives a crash: the client resumes a
  partial file with an HTTP Range request, and a whole verified file is not downloaded again. A file
  whose sha256 is committed in the lake already is skipped; a committed file leaves local scratch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from lake.errors import HistError, TerminalError
from lake.formats import ChunkSpec, ManifestEvent
from lake.manifest import Manifest
from lake.scratch import chunk_scratch
from stages.extract.base import BatchFile
from stages.extract.delivery import Delivery, commit_raw, failed
from stages.extract.planner import merge_adjacent

log = logging.getLogger(__name__)
Via = Literal["auto", "stream", "batch"]
JOB_LIFETIME = timedelta(days=30)  # Databento deletes a job's files 30 days after its submission
Outcome = tuple[str, ManifestEvent | str | None]  # a chunk id: its event, why it failed, or None (another process)


@dataclass(frozen=True)
class BatchPolicy:
    """When a job goes through the batch API (`auto`: when its billable size is above `above_bytes`),
    and how often a job's state is asked for."""

    via: Via = "auto"
    above_bytes: int = 5_000_000_000
    poll_seconds: float = 30.0

    def applies(self, billable_bytes: int) -> bool:
        return self.via == "batch" or (self.via == "auto" and billable_bytes > self.above_bytes)


class JobExpired(TerminalError):
    """The job's files were deleted before all of them were downloaded."""


def open_jobs(manifest: Manifest) -> dict[str, ChunkSpec]:
    """Jobs submitted less than JOB_LIFETIME ago and not given up, by id: the request each was
    submitted for. (An older job's files are gone; what the lake still lacks of it is asked for anew.)"""
    failures = manifest.latest("extract", "failed")
    alive_since = datetime.now(UTC) - JOB_LIFETIME
    jobs: dict[str, ChunkSpec] = {}
    for chunk_id, submitted in manifest.latest("extract", "submitted").items():
        failure = failures.get(chunk_id)
        given_up = failure is not None and failure.batch_job is None and failure.created_at > submitted.created_at
        if submitted.batch_job and not given_up and submitted.created_at > alive_since:
            jobs[submitted.batch_job] = submitted.chunk
    return jobs


def split_by_jobs(chunks: list[ChunkSpec], jobs: dict[str, ChunkSpec]) -> tuple[dict[str, list[ChunkSpec]],
                                                                               list[ChunkSpec]]:
    """The parts of `chunks` that open jobs hold, by job id, and the rest: a chunk that shares symbols
    and days with a job is cut into the job's symbols over the job's window (held) and the other
    symbols and days (the rest)."""
    held: dict[str, list[ChunkSpec]] = {}
    rest: list[ChunkSpec] = []
    for chunk in chunks:
        pieces = [chunk]
        for job_id, request in jobs.items():
            outside: list[ChunkSpec] = []
            job_symbols = set(request.symbols)
            for piece in pieces:
                shared = tuple(s for s in piece.symbols if s in job_symbols)
                if not (shared and _same_source(request, piece) and request.start < piece.end
                        and piece.start < request.end):
                    outside.append(piece)
                    continue
                start, end = max(piece.start, request.start), min(piece.end, request.end)
                held.setdefault(job_id, []).append(piece.model_copy(update={"symbols": shared, "start": start,
                                                                            "end": end}))
                others = tuple(s for s in piece.symbols if s not in shared)
                if others:
                    outside.append(piece.model_copy(update={"symbols": others, "start": start, "end": end}))
                if piece.start < start:
                    outside.append(piece.model_copy(update={"end": start}))
                if piece.end > end:
                    outside.append(piece.model_copy(update={"start": end}))
            pieces = outside
        rest += pieces
    return held, rest


def _same_source(request: ChunkSpec, chunk: ChunkSpec) -> bool:
    return (request.dataset, request.source_schema, request.stype_in) == (chunk.dataset, chunk.source_schema,
                                                                         chunk.stype_in)


def deliver_open_jobs(delivery: Delivery, jobs: dict[str, ChunkSpec], poll_seconds: float) -> list[Outcome]:
    """Every remaining file of jobs already paid for."""
    return [outcome for job_id, request in jobs.items()
            for outcome in deliver_job(delivery, job_id, request, poll_seconds)]


def run_batch(delivery: Delivery, chunks: list[ChunkSpec], poll_seconds: float) -> list[Outcome]:
    """Deliver `chunks` (none of them held by an open job) through new batch jobs, one per run of
    adjacent chunks of one request."""
    outcomes: list[Outcome] = []
    for request in merge_adjacent(chunks):
        try:
            job = _submitted(delivery, request)
        except HistError as exc:
            outcomes.append((request.chunk_id, failed(delivery.manifest, request, f"batch submit: {exc}")))
            continue
        if job is None:
            outcomes.append((request.chunk_id, None))
            continue
        outcomes += deliver_job(delivery, *job, poll_seconds)
    return outcomes


def _submitted(delivery: Delivery, request: ChunkSpec) -> tuple[str, ChunkSpec] | None:
    """A job for `request` and the request it was made for, recorded before anything waits on it;
    None when another process is submitting it."""
    manifest = delivery.manifest
    with delivery.lake.lock("extract", f"batch-{request.chunk_id}") as locked:
        if not locked:
            return None
        jobs = open_jobs(manifest)
        held, rest = split_by_jobs([request], jobs)
        if held and not rest:  # another process submitted it meanwhile
            job_id = next(iter(held))
            return job_id, jobs[job_id]
        known = {e.batch_job for e in manifest.latest("extract", "submitted").values() if e.batch_job}
        job_id = delivery.adapter.submit_batch(request, known)
        manifest.record("extract", request, batch_job=job_id)
    log.info("batch job %s for %s", job_id, request.chunk_id,
             extra={"event": "batch_submitted", "stage": "extract", "chunk_id": request.chunk_id})
    return job_id, request


def deliver_job(delivery: Delivery, job_id: str, request: ChunkSpec, poll_seconds: float) -> list[Outcome]:
    """Poll the job until it is done, then download and commit each of its files the lake lacks. A
    failure keeps the job: only its expiry gives it up."""
    lake, manifest = delivery.lake, delivery.manifest
    with lake.lock("extract", f"batch-{job_id}") as locked:
        if not locked:
            return [(request.chunk_id, None)]
        try:
            _wait_until_done(delivery, job_id, poll_seconds)
            files = delivery.adapter.batch_files(job_id)
        except JobExpired as exc:
            return [(request.chunk_id, failed(manifest, request, str(exc)))]
        except HistError as exc:
            return [(request.chunk_id, failed(manifest, request, f"batch job {job_id}: {exc} (the job is kept: "
                                                                 "a rerun polls it again)", job_id))]
        held = {f.sha256 for e in manifest.latest("extract").values() for f in e.files}
        outcomes = [_deliver(delivery, job_id, request, file) for file in files if file.sha256 not in held]
        with contextlib.suppress(OSError):  # empty once every file is committed
            (lake.tmp / "batch" / job_id).rmdir()
        return outcomes


def _wait_until_done(delivery: Delivery, job_id: str, poll_seconds: float) -> None:
    while (state := delivery.adapter.batch_state(job_id)) != "done":
        if state == "expired":
            raise JobExpired(f"job {job_id} expired before its files were downloaded; rerun to submit a new job")
        time.sleep(poll_seconds)


def _deliver(delivery: Delivery, job_id: str, request: ChunkSpec, file: BatchFile) -> Outcome:
    """Download and verify one file, then commit it as the chunk of the window its metadata names."""
    try:
        downloaded = delivery.adapter.download_batch_file(job_id, file, delivery.lake.tmp / "batch")
    except HistError as exc:
        return request.chunk_id, failed(delivery.manifest, request, f"batch file {file.name} of job {job_id}: {exc}",
                                        job_id)
    chunk = request.model_copy(update={"start": max(request.start, downloaded.start),
                                       "end": min(request.end, downloaded.end)})
    with delivery.lake.lock("extract", chunk.chunk_id) as locked:
        if not locked:  # the verified file stays in tmp/batch for whoever holds the chunk
            return chunk.chunk_id, None
        with chunk_scratch(delivery.lake, "extract", chunk.chunk_id) as scratch:
            return chunk.chunk_id, commit_raw(delivery, chunk, downloaded.path, downloaded.records, scratch,
                                              batch_job=job_id)
