"""Which batch jobs are still open, and which chunks they hold: a job id, once known, is kept until it
expires, and a chunk it holds comes from it whatever the rest of the plan."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lake.formats import ChunkSpec, ManifestEvent
from lake.manifest import JsonlManifest
from stages.extract.batch import open_jobs, split_by_jobs


def chunk(start: int, end: int, symbols: tuple[str, ...] = ("ESH4", "NQH4")) -> ChunkSpec:
    return ChunkSpec(dataset="GLBX.MDP3", schema="trades", source_schema="trades", stype_in="raw_symbol",
                     symbols=symbols, start=datetime(2024, 1, start, tzinfo=UTC),
                     end=datetime(2024, 1, end, tzinfo=UTC))


def submitted(manifest: JsonlManifest, request: ChunkSpec, job_id: str, days_ago: float = 0) -> None:
    manifest.append(ManifestEvent(event_id=uuid.uuid4().hex, stage="extract", status="submitted",
                                  chunk_id=request.chunk_id, chunk=request, batch_job=job_id,
                                  created_at=datetime.now(UTC) - timedelta(days=days_ago)))


def test_open_jobs_given_failed_polls_keep_the_job_and_only_expiry_or_age_give_it_up(tmp_path: Path) -> None:
    manifest = JsonlManifest(tmp_path / "events.jsonl")
    polled, expired, old = chunk(2, 4), chunk(4, 6), chunk(6, 8)
    submitted(manifest, polled, "JOB-POLLED")
    manifest.record("extract", polled, error="batch job JOB-POLLED: HTTP 503", batch_job="JOB-POLLED")
    submitted(manifest, expired, "JOB-EXPIRED")
    manifest.record("extract", expired, error="job JOB-EXPIRED expired")
    submitted(manifest, old, "JOB-OLD", days_ago=31)

    assert open_jobs(manifest) == {"JOB-POLLED": polled}


def test_split_by_jobs_given_chunk_partly_inside_a_job_cuts_it_at_the_jobs_window() -> None:
    jobs = {"JOB": chunk(2, 4)}

    held, rest = split_by_jobs([chunk(3, 6), chunk(2, 3, ("ESM4",))], jobs)

    assert held == {"JOB": [chunk(3, 4)]}
    assert rest == [chunk(4, 6), chunk(2, 3, ("ESM4",))], "the days after the job, and a symbol it never asked for"


def test_split_by_jobs_given_a_symbol_added_takes_the_jobs_symbols_from_it_and_buys_only_the_new_one() -> None:
    jobs = {"JOB": chunk(2, 4)}

    held, rest = split_by_jobs([chunk(2, 5, ("ESH4", "ESM4", "NQH4"))], jobs)

    assert held == {"JOB": [chunk(2, 4)]}
    assert rest == [chunk(2, 4, ("ESM4",)), chunk(4, 5, ("ESH4", "ESM4", "NQH4"))]
