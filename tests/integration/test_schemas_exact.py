"""Every schema through the replay gateway into TimescaleDB, compared field by field with
Databento's own decoding of the same bytes (DBNStore iteration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path

import numpy as np
import psycopg
import pytest
from databento import DBNStore
from psycopg import sql

from schemas.mappings import ColumnMapping, RecordKind, load_mappings
from tests.conftest import ALL_SCHEMAS, DATASET, Gateway, HistRunner
from tests.integration.test_accounting import assert_accounted
from tools.generate import instrument_id

MAPPINGS = load_mappings(Path(__file__).parents[2] / "configs" / "databento_mappings.yaml")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNDEF_PRICE = UNDEF_QUANTITY = 2**63 - 1
UNDEF_TIMESTAMP = 2**64 - 1
REQUESTED = ("ESH4", "NQH4")


def source_records(data: Path, dataset: str, schema: str) -> list[object]:
    ids = {instrument_id(dataset, s) for s in REQUESTED}
    records = [r for day in ("2024-01-02", "2024-01-03")
               for r in DBNStore.from_file(data / dataset / schema / f"{day}.dbn.zst")
               if r.instrument_id in ids]
    return records


def field(record: object, name: str) -> object:
    value = getattr(record.levels[0], name.removesuffix("_00")) if name.endswith("_00") else getattr(record, name)  # type: ignore[attr-defined]
    return value.value if isinstance(value, Enum) else value


def expected(record: object, column: ColumnMapping, symbol: str) -> object:
    """What the stored column must equal, from the record as Databento decodes it."""
    if column.as_ in ("symbol", "raw_symbol"):
        return symbol
    if column.as_ == "dataset" or column.as_ == "interval":
        return None  # checked separately
    raw = field(record, column.source or "")
    match column.as_:
        case "price":
            return None if raw == UNDEF_PRICE else raw
        case "quantity":
            return None if raw == UNDEF_QUANTITY else raw
        case "timestamp":
            return None if raw == UNDEF_TIMESTAMP else raw // 1000  # type: ignore[operator]
        case "nanos":
            return None if raw == UNDEF_TIMESTAMP else raw
        case "char" | "text":
            return None if raw in ("", "\0") else raw
        case _:
            return None if column.null_if_max and raw == type_max(record, column.source or "") else raw


def type_max(record: object, name: str) -> int:
    """The largest value of the record field's own integer type: Databento's 'unset'."""
    return int(np.iinfo(np.dtype(dict(type(record)._dtypes)[name])).max)  # type: ignore[attr-defined]


def stored(value: object, column: ColumnMapping) -> object:
    """The stored value in the units of `expected`: prices times 1e9, timestamps in microseconds."""
    if value is None:
        return None
    if column.as_ == "price":
        scaled = value * 10**9  # type: ignore[operator]
        assert scaled == scaled.to_integral_value(), f"price {value} is not a whole number of 1e-9 units"
        assert isinstance(value, Decimal)
        return int(scaled)
    if column.as_ == "timestamp":
        return (value - EPOCH) // timedelta(microseconds=1)  # type: ignore[operator]
    return value


def ordering(kind: RecordKind) -> list[str]:
    return [c for c in ("ts_recv_ns", "ts_event_ns", "instrument_id", "sequence", "stat_type") if c in kind.columns]


@pytest.mark.parametrize("schema", ALL_SCHEMAS)
def test_ingest_given_schema_stores_every_field_as_databento_decodes_it(
        schema: str, hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    check_schema(schema, DATASET, hist, gateway, database_url)


@pytest.mark.parametrize("dataset", ["XV1.TEST", "XV2.TEST"])
@pytest.mark.parametrize("schema", ["statistics", "definition"])
def test_ingest_given_old_dbn_version_lands_in_the_same_columns(
        dataset: str, schema: str, hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    assert DBNStore.from_file(gateway.data / dataset / schema / "2024-01-02.dbn.zst").metadata.version < 3
    check_schema(schema, dataset, hist, gateway, database_url)


def check_schema(schema: str, dataset: str, hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    hist("ingest", "--dataset", dataset, "--schema", schema, "--symbols", ",".join(REQUESTED),
         "--start-date", "2024-01-02", "--end-date", "2024-01-04")

    assert_accounted(hist.lake)
    kind = MAPPINGS.kind_for(schema)
    columns = list(kind.columns)
    order = ordering(kind)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(kind.table),
            sql.SQL(", ").join(map(sql.Identifier, order)))).fetchall()
    symbols = {instrument_id(dataset, s): s for s in REQUESTED}
    records = source_records(gateway.data, dataset, schema)
    records.sort(key=lambda r: tuple(
        field(r, kind.columns[c].source or "") for c in order))  # type: ignore[arg-type, return-value]
    assert len(rows) == len(records) > 0
    interval = MAPPINGS.schema_mapping(schema).interval
    for row, record in zip(rows, records, strict=True):
        values = dict(zip(columns, row, strict=True))
        assert values["dataset"] == dataset
        if "interval" in values:
            assert values["interval"] == interval
        for name, column in kind.columns.items():
            if column.as_ in ("dataset", "interval"):
                continue
            assert stored(values[name], column) == expected(record, column, symbols[record.instrument_id]), (  # type: ignore[attr-defined]
                f"{schema}.{name}")
