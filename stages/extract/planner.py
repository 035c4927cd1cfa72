"""Planning a job into chunks: UTC-day-aligned windows of `date_chunk_interval_days`, and symbol
lists of at most 2,000 per request (Databento's limit)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from lake.formats import ChunkSpec
from schemas.config import MAX_SYMBOLS_PER_REQUEST, JobConfig


def plan_chunks(job: JobConfig, source_schema: str) -> list[ChunkSpec]:
    symbols = list(dict.fromkeys(job.symbols))  # drop repeats, keep order
    groups = [symbols[i:i + MAX_SYMBOLS_PER_REQUEST] for i in range(0, len(symbols), MAX_SYMBOLS_PER_REQUEST)]
    chunks: list[ChunkSpec] = []
    day = job.start_date
    while day < job.end_date:
        stop = min(day + timedelta(days=job.date_chunk_interval_days), job.end_date)
        for group in groups:
            chunks.append(ChunkSpec(
                dataset=job.dataset, schema=job.schema_, source_schema=source_schema,
                stype_in=job.stype_in, symbols=tuple(group),
                start=datetime.combine(day, time(), UTC), end=datetime.combine(stop, time(), UTC),
            ))
        day = stop
    return chunks
