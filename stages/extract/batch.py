"""Big pulls through Databento's batch API: submit a job, poll it, download its files, and commit
each file as a raw chunk that transform and load handle like any other.

Resumable at every step, never paying twice. The job id is in the manifest (a `submitted` extract
event) before the first poll, so a run killed while waiting polls the same job again. Files download
into `<lake>/tmp/batch/<job id>/`, which survives a crash: the client resumes a partial file with an
HTTP Range request. A file whose sha256 is already committed in the lake is not downloaded again. An
expired job is recorded as failed, and the next run submits a new one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from lake.errors import HistError, TerminalError
from lake.formats import ChunkSpec, ManifestEvent
from lake.scratch import chunk_scratch
from stages.extract.base import BatchFile
from stages.extract.delivery import Delivery, commit_raw, failed

log = logging.getLogger(__name__)
Via = Literal["auto", "stream", "batch"]


@dataclass(frozen=True)
class BatchPolicy:
    """When a job goes through the batch API (`auto`: when its billable size is above `above_bytes`),
    and how often a job's state is asked for."""

    via: Via = "auto"
    above_bytes: int = 5_000_000_000
    poll_seconds: float = 30.0

    def applies(self, billable_bytes: int) -> bool:
        return self.via == "batch" or (self.via == "auto" and billable_bytes > self.above_bytes)


def run_batch(delivery: Delivery, request: ChunkSpec, poll_seconds: float) -> list[ManifestEvent | str] | None:
    """Deliver one request through a batch job: each file's committed event or failure reason; None
    when another process is on this request."""
    with delivery.lake.lock("extract", request.chunk_id) as locked:
        if not locked:
            return None
        try:
            job_id = _job_for(delivery, request)
            _wait_until_done(delivery, job_id, poll_seconds)
            files = delivery.adapter.batch_files(job_id)
        except HistError as exc:
            return [failed(delivery.manifest, request, f"batch job: {exc}")]
        held = {f.sha256 for e in delivery.manifest.latest("extract").values() for f in e.files}
        return [_deliver(delivery, job_id, request, file) for file in files if file.sha256 not in held]


def _job_for(delivery: Delivery, request: ChunkSpec) -> str:
    """The job submitted for this request before, or a new one, recorded before anything waits on
    it. Only a failure of the job itself (expired, refused) makes a new one; a failed file of a good
    job is downloaded again from the same job, which costs nothing."""
    manifest = delivery.manifest
    submitted = manifest.latest("extract", "submitted").get(request.chunk_id)
    failure = manifest.latest("extract", "failed").get(request.chunk_id)
    if submitted and submitted.batch_job and (failure is None or failure.created_at < submitted.created_at
                                               or failure.batch_job == submitted.batch_job):
        log.info("polling batch job %s again for %s", submitted.batch_job, request.chunk_id,
                 extra={"event": "batch_resumed", "stage": "extract", "chunk_id": request.chunk_id})
        return submitted.batch_job
    job_id = delivery.adapter.submit_batch(request)
    manifest.record("extract", request, batch_job=job_id)
    log.info("submitted batch job %s for %s", job_id, request.chunk_id,
             extra={"event": "batch_submitted", "stage": "extract", "chunk_id": request.chunk_id})
    return job_id


def _wait_until_done(delivery: Delivery, job_id: str, poll_seconds: float) -> None:
    while (state := delivery.adapter.batch_state(job_id)) != "done":
        if state == "expired":
            raise TerminalError(f"job {job_id} expired before its files were downloaded; rerun to submit a new job")
        time.sleep(poll_seconds)


def _deliver(delivery: Delivery, job_id: str, request: ChunkSpec, file: BatchFile) -> ManifestEvent | str:
    """Download and verify one file, then commit it as the chunk of the window its metadata names."""
    try:
        downloaded = delivery.adapter.download_batch_file(job_id, file, delivery.lake.tmp / "batch")
    except HistError as exc:
        return failed(delivery.manifest, request, f"batch file {file.name} of job {job_id}: {exc}", job_id)
    chunk = request.model_copy(update={"start": max(request.start, downloaded.start),
                                       "end": min(request.end, downloaded.end)})
    with delivery.lake.lock("extract", chunk.chunk_id) as locked:
        if not locked:  # the verified file stays in tmp/batch for whoever holds the chunk
            return f"chunk {chunk.chunk_id} is held by another process"
        with chunk_scratch(delivery.lake, "extract", chunk.chunk_id) as scratch:
            return commit_raw(delivery, chunk, downloaded.path, downloaded.records, scratch, batch_job=job_id)
