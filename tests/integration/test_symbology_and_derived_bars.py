"""Symbols from the response's symbology (parent, continuous, instrument id), and 5m/15m bars checked
against an independent aggregation of the 1m source bars."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import psycopg
import pytest
from databento import DBNStore

from tests.conftest import DATASET, Gateway, HistRunner
from tools.generate import generate, instrument_id

WINDOW = ["--start-date", "2024-01-02", "--end-date", "2024-01-04"]


def labels(database_url: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(database_url) as conn:
        return set(conn.execute("SELECT DISTINCT symbol, raw_symbol, date(ts_event AT TIME ZONE 'UTC')::text"
                                " FROM ohlcv_data").fetchall())


def test_ingest_given_parent_symbol_labels_rows_with_it_and_keeps_each_contract(hist: HistRunner,
                                                                                database_url: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", "ES.FUT", "--stype-in", "parent", *WINDOW)

    assert labels(database_url) == {("ES.FUT", c, d) for c in ("ESH4", "ESM4") for d in ("2024-01-02", "2024-01-03")}


def test_ingest_given_continuous_symbol_follows_the_roll(hist: HistRunner, database_url: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", "ES.c.0", "--stype-in", "continuous",
         *WINDOW)

    assert labels(database_url) == {("ES.c.0", "ESH4", "2024-01-02"), ("ES.c.0", "ESM4", "2024-01-03")}


def test_ingest_given_instrument_ids_labels_rows_with_the_id_asked_and_the_resolved_raw_symbol(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    es, nq = instrument_id(DATASET, "ESH4"), instrument_id(DATASET, "NQH4")
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", f"{es},{nq}", "--stype-in",
         "instrument_id", *WINDOW)

    assert {(s, r) for s, r, _ in labels(database_url)} == {(str(es), "ESH4"), (str(nq), "NQH4")}
    resolves = [r for r in gateway.admin("requests") if r["path"] == "/v0/symbology.resolve"]  # type: ignore[union-attr]
    assert len(resolves) == 1, "like Databento, the gateway sends no mappings for a request by id: one resolve a chunk"


def test_ingest_given_all_symbols_labels_every_row_with_its_raw_symbol(hist: HistRunner, database_url: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1d", "--symbols", "ALL_SYMBOLS", *WINDOW)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT instrument_id, symbol, raw_symbol, count(*) FROM ohlcv_data"
                            " GROUP BY 1, 2, 3").fetchall()
    assert rows and all(symbol == raw and raw is not None for _, symbol, raw, _ in rows)
    assert {r[2] for r in rows} >= {"ESH4", "ESM4", "NQH4"}
    assert all(instrument_id(DATASET, raw) == iid for iid, _, raw, _ in rows)


def test_ingest_given_more_ids_than_one_resolve_takes_resolves_them_in_calls_of_2000(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    by_id = {instrument_id("WIDE.TEST", f"X{i:04d}Z4"): f"X{i:04d}Z4" for i in range(2600)}
    symbols = sorted(by_id.values())[:2500]  # distinct instrument ids
    generate(gateway.data, "WIDE.TEST", symbols, date(2024, 1, 2), date(2024, 1, 3), ["definition"], seed=5,
             trades_per_day=1)

    hist("ingest", "--dataset", "WIDE.TEST", "--schema", "definition", "--symbols", "ALL_SYMBOLS",
         "--start-date", "2024-01-02", "--end-date", "2024-01-03")

    resolves = [r for r in gateway.admin("requests") if r["path"] == "/v0/symbology.resolve"]  # type: ignore[union-attr]
    assert sorted(len(str(r["params"]["symbols"]).split(",")) for r in resolves) == [500, 2000]  # type: ignore[index]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT raw_symbol) FROM definitions_data"
                            " WHERE raw_symbol = symbol").fetchone() == (2500, 2500)


def test_extract_given_resolve_failing_keeps_the_bought_bytes_and_rerun_resolves_without_downloading(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    ids = str(instrument_id(DATASET, "ESH4"))
    args = ["ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", ids, "--stype-in", "instrument_id",
            *WINDOW]
    gateway.faults({"kind": "500", "count": 100, "path": "/v0/symbology.resolve"})

    failed = hist(*args, check=False)

    assert failed.returncode == 1 and "symbology.resolve" in failed.stderr
    assert len(list((hist.lake / "raw").rglob("*.dbn.zst"))) == 1
    gateway.faults()
    gateway.admin("requests", [])

    hist(*args)

    assert gateway.requests() == [], "the bytes bought before the failed resolve are not bought again"
    assert {(s, r) for s, r, _ in labels(database_url)} == {(ids, "ESH4")}


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
    assert "1 chunks" in result.stdout, "two days of minute bars: one request (an ISO week)"
