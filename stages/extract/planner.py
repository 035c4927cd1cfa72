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

What the lake holds already is planned per symbol and day: for the same dataset, source schema and
symbology, the committed chunks that hold any of the job's symbols in a window are planned as they are,
and new requests ask only for the days each symbol lacks (symbols lacking the same days share requests,
grouped as above). So adding a symbol to a job buys that symbol alone, extending a job buys the new
days alone, and bytes already bought are never bought again.
"""

from __future__ import annotations

import bisect
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


def plan_chunks(job: JobConfig, source_schema: str, committed: Iterable[ChunkSpec] = ()) -> list[ChunkSpec]:
    """The job's requests in time order, then symbol group: the committed chunks that hold part of what
    it asks for, and new requests for only what the lake lacks per symbol and day."""
    rate, unit = RECORDS_PER_SYMBOL_DAY.get(source_schema, (TICK_RECORDS_PER_SYMBOL_DAY, "day"))
    days = job.date_chunk_interval_days or WINDOW_DAYS[unit]
    size = max(1, min(MAX_SYMBOLS_PER_REQUEST, MAX_RECORDS_PER_REQUEST // (rate * days)))
    template = ChunkSpec(dataset=job.dataset, schema=job.schema_, source_schema=source_schema, stype_in=job.stype_in,
                         symbols=(), start=_midnight(job.start_date), end=_midnight(job.end_date))
    held = Coverage(c for c in committed if _source(c) == _source(template))
    symbols = sorted(set(job.symbols))  # the same groups, whatever order the symbols were given in
    planned: dict[str, ChunkSpec] = {}
    for first, last in windows(job.start_date, job.end_date, unit, job.date_chunk_interval_days):
        start, end = _midnight(first), _midnight(last)
        lacking: dict[tuple[tuple[datetime, datetime], ...], list[str]] = {}
        for symbol in symbols:
            covering = held.overlapping(symbol, start, end)
            for cover in covering:
                reused = cover.model_copy(update={"schema_": job.schema_})  # the bytes of ohlcv-1m serve ohlcv-5m
                planned.setdefault(reused.chunk_id, reused)
            gaps = _gaps(start, end, covering)
            if gaps:
                lacking.setdefault(gaps, []).append(symbol)
        for gaps, group in lacking.items():  # symbols lacking the same days share requests
            for gap_start, gap_end in gaps:
                for i in range(0, len(group), size):
                    chunk = template.model_copy(update={"symbols": tuple(group[i:i + size]), "start": gap_start,
                                                        "end": gap_end})
                    planned.setdefault(chunk.chunk_id, chunk)
    return sorted(planned.values(), key=lambda c: (c.start, c.end, c.symbols))


class Coverage:
    """Committed chunks by symbol, to find those overlapping a window without scanning them all."""

    def __init__(self, chunks: Iterable[ChunkSpec]) -> None:
        self._by_symbol: dict[str, list[ChunkSpec]] = {}
        for chunk in chunks:
            for symbol in chunk.symbols:
                self._by_symbol.setdefault(symbol, []).append(chunk)
        self._starts: dict[str, list[datetime]] = {}
        self._longest: dict[str, timedelta] = {}
        for symbol, held in self._by_symbol.items():
            held.sort(key=lambda c: c.start)
            self._starts[symbol] = [c.start for c in held]
            self._longest[symbol] = max(c.end - c.start for c in held)

    def overlapping(self, symbol: str, start: datetime, end: datetime) -> list[ChunkSpec]:
        """The committed chunks holding `symbol` somewhere in [start, end), by start."""
        held = self._by_symbol.get(symbol, [])
        if not held:
            return []
        starts = self._starts[symbol]
        first = bisect.bisect_left(starts, start - self._longest[symbol])
        last = bisect.bisect_left(starts, end)
        return [c for c in held[first:last] if c.end > start]


def _gaps(start: datetime, end: datetime, covering: list[ChunkSpec]) -> tuple[tuple[datetime, datetime], ...]:
    """The parts of [start, end) that no chunk of `covering` (sorted by start) holds."""
    gaps: list[tuple[datetime, datetime]] = []
    cursor = start
    for cover in covering:
        if cover.start > cursor:
            gaps.append((cursor, min(cover.start, end)))
        cursor = max(cursor, cover.end)
    if cursor < end:
        gaps.append((cursor, end))
    return tuple(gaps)


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


def _source(chunk: ChunkSpec) -> tuple[str, str, str]:
    """What a chunk's bytes are, whatever schema is made of them."""
    return chunk.dataset, chunk.source_schema, chunk.stype_in
