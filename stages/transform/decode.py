"""DBN -> Arrow in bounded batches, plus the response's symbology as a table.

`to_ndarray(count=N)` hands out zero-copy numpy views of N records in the file's own DBN version
layout; each field becomes one Arrow column. Fixed-width byte fields are passed on as raw codes
(uint8) or binary and decoded to text in SQL, far faster than per-record Python. Records whose
layout changed between DBN versions (definitions, statistics in v1/v2 files) are upgraded to the v3
layout first, so every version lands in the same columns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
from databento import DBNStore
from databento.common.constants import SCHEMA_STRUCT_MAP

from lake.formats import to_ns

SKIPPED_FIELDS = {"length", "_reserved"}
SYMBOLOGY_SCHEMA = pa.schema([("instrument_id", pa.int64()), ("start_ns", pa.int64()), ("end_ns", pa.int64()),
                              ("symbol", pa.string()), ("raw_symbol", pa.string())])
RawSymbols = Mapping[int, list[tuple[int, int, str | None]]]


def open_store(path: Path) -> DBNStore:
    return DBNStore.from_file(path)


def iter_batches(store: DBNStore, batch_records: int) -> Iterator[pa.RecordBatch]:
    """Yield the file's records as Arrow batches of at most `batch_records` rows, with `rec_seq`,
    each record's position in the file."""
    offset = 0
    for array in _arrays(store, batch_records):
        if len(array) == 0:
            continue
        columns = {name: _column(array[name]) for name in array.dtype.names or () if name not in SKIPPED_FIELDS}
        columns["rec_seq"] = pa.array(np.arange(offset, offset + len(array), dtype=np.int64))
        offset += len(array)
        yield pa.RecordBatch.from_pydict(columns)


def _arrays(store: DBNStore, batch_records: int) -> Iterator[np.ndarray]:
    schema = store.schema
    if schema is None:
        raise ValueError("the file mixes record types (no schema in its metadata)")
    current = np.dtype(SCHEMA_STRUCT_MAP[schema]._dtypes)
    if store.metadata.version >= 3 or np.dtype(store._schema_struct_map[schema]._dtypes) == current:
        yield from store.to_ndarray(count=batch_records)
        return
    records = iter(store)  # iteration upgrades every record to the current (v3) layout
    while batch := list(islice(records, batch_records)):
        yield np.frombuffer(b"".join(bytes(r) for r in batch), dtype=current)


def _column(values: np.ndarray) -> pa.Array:
    if values.dtype.kind == "S":
        if values.dtype.itemsize == 1:
            return pa.array(np.ascontiguousarray(values).view(np.uint8))
        return pa.array(values.tolist(), pa.binary())
    return pa.array(np.ascontiguousarray(values))


def symbology_table(store: DBNStore, raw_symbols: RawSymbols | None = None) -> pa.Table:
    """(instrument_id, [start_ns, end_ns), symbol, raw_symbol) for every instrument of the response.

    `symbol` says what the user asked for: ESH4, ES.FUT, ES.c.0, or the instrument id itself for a
    request by id; `raw_symbol` is the contract's own symbol. The metadata's mappings give both for
    raw-symbol requests; for the others the raw symbols come from `raw_symbols` (instrument_id ->
    [(start_ns, end_ns, raw)], resolved by extract), which also covers the responses that carry no
    mappings at all (requests by instrument id, ALL_SYMBOLS): there an id asked for is labelled with
    itself, and under ALL_SYMBOLS every contract with its raw symbol."""
    metadata = store.metadata
    stype_in = str(metadata.stype_in)
    resolved = raw_symbols or {}
    rows: list[dict[str, object]] = []
    for in_symbol, intervals in (metadata.mappings or {}).items():
        for interval in intervals:
            out_symbol = str(interval["symbol"])
            if not out_symbol:
                continue
            start, end = day_ns(interval["start_date"]), day_ns(interval["end_date"])
            if stype_in == "instrument_id":
                rows.append(_row(int(in_symbol), start, end, in_symbol, out_symbol))
            elif stype_in == "raw_symbol":
                rows.append(_row(int(out_symbol), start, end, in_symbol, in_symbol))
            else:
                iid = int(out_symbol)
                pieces = [(max(s, start), min(e, end), raw) for s, e, raw in resolved.get(iid, [])
                          if s < end and e > start] or [(start, end, None)]
                rows.extend(_row(iid, s, e, in_symbol, raw) for s, e, raw in pieces)
    labelled = {row["instrument_id"] for row in rows}
    everything = "ALL_SYMBOLS" in (metadata.symbols or [])
    for iid, pieces in resolved.items():
        if iid not in labelled:  # no mappings in the response
            rows.extend(_row(iid, s, e, (raw or "") if everything else str(iid), raw) for s, e, raw in pieces)
    return pa.Table.from_pylist(_without_overlaps(rows), schema=SYMBOLOGY_SCHEMA)


def _without_overlaps(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """At most one interval per instrument and moment (the first by symbol wins), so joining on it
    never duplicates a record."""
    kept: list[dict[str, object]] = []
    last_end: dict[object, int] = {}
    for row in sorted(rows, key=lambda r: (r["instrument_id"], r["start_ns"], str(r["symbol"]))):
        start = max(int(row["start_ns"]), last_end.get(row["instrument_id"], int(row["start_ns"])))  # type: ignore[call-overload]
        if start < int(row["end_ns"]):  # type: ignore[call-overload]
            kept.append({**row, "start_ns": start})
            last_end[row["instrument_id"]] = int(row["end_ns"])  # type: ignore[call-overload]
    return kept


def _row(iid: int, start: int, end: int, symbol: str, raw: str | None) -> dict[str, object]:
    return {"instrument_id": iid, "start_ns": start, "end_ns": end, "symbol": symbol, "raw_symbol": raw}


def day_ns(day: date | str) -> int:
    parsed = day if isinstance(day, date) else date.fromisoformat(day)
    return to_ns(datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC))
