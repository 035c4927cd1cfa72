"""DBN -> Arrow in bounded batches, plus the response's symbology as a table.

`to_ndarray(count=N)` hands out zero-copy numpy views of N records in the file's own DBN version
layout; each field becomes one Arrow column. Fixed-width byte fields are passed on as raw codes
(uint8) or binary and decoded to text in SQL, which is far faster than per-record Python."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from databento import DBNStore

SKIPPED_FIELDS = {"length", "_reserved"}
SYMBOLOGY_SCHEMA = pa.schema(
    [("instrument_id", pa.int64()), ("start_ns", pa.int64()), ("end_ns", pa.int64()),
     ("symbol", pa.string())]
)


def open_store(path: Path) -> DBNStore:
    return DBNStore.from_file(path)


def iter_batches(store: DBNStore, batch_records: int) -> Iterator[pa.RecordBatch]:
    """Yield the file's records as Arrow batches of at most `batch_records` rows, with `rec_seq`,
    each record's position in the file."""
    offset = 0
    for array in store.to_ndarray(count=batch_records):
        if len(array) == 0:
            continue
        columns: dict[str, pa.Array] = {}
        for name in array.dtype.names or ():
            if name in SKIPPED_FIELDS:
                continue
            columns[name] = _column(array[name])
        columns["rec_seq"] = pa.array(np.arange(offset, offset + len(array), dtype=np.int64))
        offset += len(array)
        yield pa.RecordBatch.from_pydict(columns)


def _column(values: np.ndarray) -> pa.Array:
    if values.dtype.kind == "S":
        if values.dtype.itemsize == 1:
            return pa.array(np.ascontiguousarray(values).view(np.uint8))
        return pa.array(values.tolist(), pa.binary())
    return pa.array(np.ascontiguousarray(values))


def symbology_table(store: DBNStore) -> pa.Table:
    """(instrument_id, [start_ns, end_ns), symbol) for every mapping interval in the metadata, where
    `symbol` is the non-instrument-id side of the mapping (the symbol the user asked for, or the raw
    symbol when the request was by instrument id)."""
    metadata = store.metadata
    by_instrument_id = str(metadata.stype_in) in ("instrument_id", "SType.INSTRUMENT_ID")
    rows: list[tuple[int, int, int, str]] = []
    for in_symbol, intervals in (metadata.mappings or {}).items():
        for interval in intervals:
            out_symbol = str(interval["symbol"])
            if not out_symbol:
                continue
            instrument_id, symbol = (
                (int(in_symbol), out_symbol) if by_instrument_id else (int(out_symbol), in_symbol)
            )
            rows.append((instrument_id, _day_ns(interval["start_date"]), _day_ns(interval["end_date"]),
                         symbol))
    return pa.Table.from_pylist(
        [dict(zip(SYMBOLOGY_SCHEMA.names, row, strict=True)) for row in rows], schema=SYMBOLOGY_SCHEMA
    )


def _day_ns(day: date | str) -> int:
    parsed = day if isinstance(day, date) else date.fromisoformat(day)
    return int(datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC).timestamp()) * 1_000_000_000
