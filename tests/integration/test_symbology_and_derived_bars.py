"""Symbols from the response's symbology (parent, continuous, instrument id), and 5m/15m bars checked
against an independent aggregation of the 1m source bars."""

from __future__ import annotations

from collections import defaultdict

import psycopg
import pytest
from databento import DBNStore

from tests.conftest import DATASET, Gateway, HistRunner
from tools.generate import instrument_id

WINDOW = ["--start-date", "2024-01-02", "--end-date", "2024-01-04"]


def labels(database_url: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(database_url) as conn:
        return set(conn.execute("SELECT DISTINCT symbol, raw_symbol, date(ts_event AT TIME ZONE 'UTC')::text FROM ohlcv_data").fetchall())


def test_ingest_given_parent_symbol_labels_rows_with_it_and_keeps_each_contract(hist: HistRunner,
                                                                                database_url: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", "ES.FUT", "--stype-in", "parent", *WINDOW)

    assert labels(database_url) == {("ES.FUT", c, d) for c in ("ESH4", "ESM4") for d in ("2024-01-02", "2024-01-03")}


def test_ingest_given_continuous_symbol_follows_the_roll(hist: HistRunner, database_url: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", "ES.c.0", "--stype-in", "continuous",
         *WINDOW)

    assert labels(database_url) == {("ES.c.0", "ESH4", "2024-01-02"), ("ES.c.0", "ESM4", "2024-01-03")}


def test_ingest_given_instrument_ids_labels_rows_with_raw_symbols(hist: HistRunner, database_url: str) -> None:
    ids = f"{instrument_id(DATASET, 'ESH4')},{instrument_id(DATASET, 'NQH4')}"
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", ids, "--stype-in", "instrument_id",
         *WINDOW)

    assert {(s, r) for s, r, _ in labels(database_url)} == {("ESH4", "ESH4"), ("NQH4", "NQH4")}


def test_ingest_given_multi_symbol_request_labels_each_row_with_its_own_symbol(hist: HistRunner,
                                                                                database_url: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", "NQH4,ESH4", *WINDOW)

    with psycopg.connect(database_url) as conn:
        pairs = set(conn.execute("SELECT DISTINCT instrument_id, symbol FROM ohlcv_data").fetchall())
    assert pairs == {(instrument_id(DATASET, "ESH4"), "ESH4"), (instrument_id(DATASET, "NQH4"), "NQH4")}


def independent_bars(gateway: Gateway, minutes: int) -> dict[tuple[int, int], tuple[int, int, int, int, int]]:
    """(instrument_id, bucket start ns) -> (open, high, low, close, volume), by plain Python."""
    buckets: dict[tuple[int, int], list[object]] = defaultdict(list)
    for day in ("2024-01-02", "2024-01-03"):
        for bar in DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / f"{day}.dbn.zst"):
            if bar.instrument_id == instrument_id(DATASET, "ESH4"):
                buckets[(bar.instrument_id, bar.ts_event - bar.ts_event % (minutes * 60 * 10**9))].append(bar)
    result = {}
    for key, bars in buckets.items():
        bars.sort(key=lambda b: b.ts_event)  # type: ignore[attr-defined]
        result[key] = (bars[0].open, max(b.high for b in bars), min(b.low for b in bars), bars[-1].close,  # type: ignore[attr-defined]
                       sum(b.volume for b in bars))  # type: ignore[attr-defined]
    return result


@pytest.mark.parametrize(("schema", "minutes"), [("ohlcv-5m", 5), ("ohlcv-15m", 15)])
def test_ingest_given_derived_interval_matches_independent_aggregation(
        schema: str, minutes: int, hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    result = hist("ingest", "--dataset", DATASET, "--schema", schema, "--symbols", "ESH4", *WINDOW)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT instrument_id, ts_event_ns, (open * 1e9)::bigint, (high * 1e9)::bigint, (low * 1e9)::bigint,"
            " (close * 1e9)::bigint, volume, interval, extract(epoch from ts_event)::bigint * 1000000000"
            " FROM ohlcv_data").fetchall()
    expected = independent_bars(gateway, minutes)
    assert {(r[0], r[1]): tuple(r[2:7]) for r in rows} == expected
    assert {r[7] for r in rows} == {f"{minutes}m"} and all(r[1] == r[8] for r in rows)
    assert len(expected) < 2 * 24 * 60 // minutes, "the data has empty buckets, which must produce no bar"
    assert "2 chunks" in result.stdout
