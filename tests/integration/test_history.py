"""Years of history: requests sized to the data (counted in the replay gateway's request log), and a
later job that extends an earlier one buying only what the lake does not hold."""

from __future__ import annotations

from datetime import date

import psycopg

from tests.conftest import Gateway, HistRunner
from tools.generate import generate

TEN_YEARS, HOURLY = "XTEN.TEST", "XHRS.TEST"


def bars_in_db(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT (instrument_id, ts_event_ns)) FROM ohlcv_data"
                            ).fetchone()  # type: ignore[return-value]


def test_ingest_given_ten_years_of_daily_bars_asks_at_most_12_times(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    days = generate(gateway.data, TEN_YEARS, ["ESH4"], date(2014, 3, 5), date(2024, 3, 5), ["ohlcv-1d"], seed=3,
                    trades_per_day=1)

    hist("ingest", "--dataset", TEN_YEARS, "--schema", "ohlcv-1d", "--symbols", "ESH4",
         "--start-date", "2014-03-05", "--end-date", "2024-03-05")

    assert len(gateway.requests()) <= 12, "a calendar year per request: 11 windows for ten years from March"
    assert bars_in_db(database_url) == (days, days)


def test_ingest_given_a_year_of_hourly_bars_asks_at_most_13_times_and_an_extension_only_for_the_rest(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    bars = generate(gateway.data, HOURLY, ["ESH4"], date(2023, 1, 1), date(2024, 1, 1), ["ohlcv-1h"], seed=4,
                    trades_per_day=1)
    first_half = ["--dataset", HOURLY, "--schema", "ohlcv-1h", "--symbols", "ESH4", "--start-date", "2023-01-01"]

    hist("ingest", *first_half, "--end-date", "2023-03-15")
    early = len(gateway.requests())
    gateway.admin("requests", [])
    hist("ingest", *first_half, "--end-date", "2024-01-01")

    later = gateway.requests()
    assert early == 3 and early + len(later) <= 13
    starts = sorted(str(r["params"]["start"])[:10] for r in later)  # type: ignore[index]
    assert starts[0] == "2023-03-15", "the extension asks only for what the lake does not hold"
    assert bars_in_db(database_url) == (bars, bars)


def test_ingest_given_a_symbol_added_to_a_job_buys_that_symbol_alone(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    trades = ["--dataset", "GLBX.MDP3", "--schema", "trades", "--start-date", "2024-01-02", "--end-date", "2024-01-04"]
    hist("ingest", *trades, "--symbols", "ESH4,NQH4")
    gateway.admin("requests", [])

    grown = hist("ingest", *trades, "--symbols", "ESH4,ESM4,NQH4")

    asked = sorted((str(r["params"]["symbols"]), str(r["params"]["start"])[:10]) for r in gateway.requests())  # type: ignore[index]
    assert asked == [("ESM4", "2024-01-02"), ("ESM4", "2024-01-03")], "the two days of ESM4, nothing held re-bought"
    assert "2 already in the lake" in grown.stdout
    with psycopg.connect(database_url) as conn:
        by_symbol = dict(conn.execute("SELECT symbol, count(*) FROM trades_data GROUP BY 1").fetchall())
    assert set(by_symbol) == {"ESH4", "ESM4", "NQH4"} and all(n > 0 for n in by_symbol.values())
