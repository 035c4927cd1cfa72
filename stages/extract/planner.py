"""Planning a job into chunks: requests sized to the data.

Each schema has a calendar window, from how many records a symbol has in a day: daily bars take a
year per request, hourly bars, definitions and statistics a month, minute bars an ISO week (Monday
to Monday) and second bars and ticks a UTC day. Windows align to those calendar boundaries and are
clipped to the job's [start, end), so a rerun plans the same chunk ids and an extended job plans
the same windows again. `date_chunk_interval_days` (`--chunk-days`) overrides with fixed windows of
N days from the job's start.

Symbols go into groups of at most 2,000 (Databento's limit), fewer when the estimate of one window
(records per symbol and day x days x symbols) would pass MAX_RECORDS_PER_REQUEST: ten million
records, about 0.5 GB of trades, well under Databento's 5 GB guidance for streaming requests and a
size one transform handles in bounded memory.

A planned chunk whose window the lake already holds in part, for the same dataset, schema, symbols
and symbology, is replaced by the committed chunks that cover it and requests for the gaps only:
bytes already bought are never bought again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from lake.formats import ChunkSpec
from schemas.config import MAX_SYMBOLS_PER_REQUEST, JobConfig

Window = Literal["year", "month", "week", "day"]
WINDOW_DAYS: dict[Window, int] = {"year": 366, "month": 31, "week": 7, "day": 1}
MAX_RECORDS_PER_REQUEST = 10_000_000
TICK_RECORDS_PER_SYMBOL_DAY = 250_000  # an active future's trades; schemas not listed below are ticks
RECORDS_PER_SYMBOL_DAY: dict[str, tuple[int, Window]] = {
    "ohlcv-1d": (1, "year"), "ohlcv-eod": (1, "year"),
    "ohlcv-1h": (24, "month"), "definition": (2, "month"), "statistics": (50, "month"),
    "ohlcv-1m": (1_440, "week"),
    "ohlcv-1s": (86_400, "day"),
}


def plan_chunks(job: JobConfig, source_schema: str) -> list[ChunkSpec]:
    """The job's requests in time order, then symbol group."""
    rate, unit = RECORDS_PER_SYMBOL_DAY.get(source_schema, (TICK_RECORDS_PER_SYMBOL_DAY, "day"))
    days = job.date_chunk_interval_days or WINDOW_DAYS[unit]
    symbols = sorted(set(job.symbols))  # the same groups, whatever order the symbols were given in
    size = max(1, min(MAX_SYMBOLS_PER_REQUEST, MAX_RECORDS_PER_REQUEST // (rate * days)))
    groups = [symbols[i:i + size] for i in range(0, len(symbols), size)]
    return [ChunkSpec(dataset=job.dataset, schema=job.schema_, source_schema=source_schema, stype_in=job.stype_in,
                      symbols=tuple(group), start=_midnight(start), end=_midnight(end))
            for start, end in windows(job.start_date, job.end_date, unit, job.date_chunk_interval_days)
            for group in groups]


def batch_split(source_schema: str) -> str:
    """A batch job's split_duration: a file a day for ticks and second bars, a month otherwise (a
    batch job has no year or Monday-to-Monday split); each file becomes one chunk."""
    return "day" if RECORDS_PER_SYMBOL_DAY.get(source_schema, (0, "day"))[1] == "day" else "month"


def windows(start: date, end: date, unit: Window, fixed_days: int | None = None) -> list[tuple[date, date]]:
    """[start, end) cut at calendar boundaries of `unit` (or every `fixed_days` from `start`)."""
    cuts = [start]
    while cuts[-1] < end:
        cuts.append(min(_next_boundary(cuts[-1], unit, fixed_days), end))
    return list(itertools.pairwise(cuts))


def _next_boundary(day: date, unit: Window, fixed_days: int | None) -> date:
    if fixed_days:
        return day + timedelta(days=fixed_days)
    if unit == "year":
        return date(day.year + 1, 1, 1)
    if unit == "month":
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    if unit == "week":
        return day + timedelta(days=7 - day.weekday())
    return day + timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def with_committed(planned: list[ChunkSpec], committed: Iterable[ChunkSpec]) -> list[ChunkSpec]:
    """`planned`, where a chunk the lake does not hold overlaps committed chunks of the same request
    identity, replaced by those chunks and by chunks for the uncovered gaps of its window."""
    by_identity: dict[tuple[object, ...], list[ChunkSpec]] = {}
    for chunk in committed:
        by_identity.setdefault(_identity(chunk), []).append(chunk)
    held = {c.chunk_id for chunks in by_identity.values() for c in chunks}
    result: dict[str, ChunkSpec] = {}
    for chunk in planned:
        covering = sorted((c for c in by_identity.get(_identity(chunk), [])
                           if c.start < chunk.end and c.end > chunk.start), key=lambda c: c.start)
        if chunk.chunk_id in held or not covering:
            result.setdefault(chunk.chunk_id, chunk)
            continue
        cursor = chunk.start
        for cover in covering:
            if cover.start > cursor:
                gap = chunk.model_copy(update={"start": cursor, "end": cover.start})
                result.setdefault(gap.chunk_id, gap)
            result.setdefault(cover.chunk_id, cover)
            cursor = max(cursor, cover.end)
        if cursor < chunk.end:
            gap = chunk.model_copy(update={"start": cursor, "end": chunk.end})
            result.setdefault(gap.chunk_id, gap)
    return list(result.values())


def merge_adjacent(chunks: list[ChunkSpec]) -> list[ChunkSpec]:
    """Runs of adjacent chunks of the same request identity as one window each: a batch job or a cost
    question per run, not per chunk (Databento limits both per second or minute)."""
    merged: list[ChunkSpec] = []
    for chunk in sorted(chunks, key=lambda c: (_identity(c), c.start)):
        last = merged[-1] if merged else None
        if last is not None and last.end == chunk.start and _identity(last) == _identity(chunk):
            merged[-1] = last.model_copy(update={"end": chunk.end})
        else:
            merged.append(chunk)
    return merged


def _identity(chunk: ChunkSpec) -> tuple[object, ...]:
    return chunk.dataset, chunk.schema_, chunk.source_schema, chunk.stype_in, tuple(sorted(chunk.symbols))
