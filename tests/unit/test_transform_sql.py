"""DBN -> Arrow batches -> the RuleEngine's SQL: exact decimals, NULL sentinels, bounded batches."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import databento_dbn as dbn
import duckdb
import pytest

from schemas.mappings import load_mappings, load_rules
from stages.transform.decode import iter_batches, open_store, symbology_table
from stages.transform.rule_engine import RuleEngine
from tools.generate import day_start_ns, empty, instrument_id, metadata, write_dbn

CONFIGS = Path(__file__).parents[2] / "configs"
DAY = day_start_ns(date(2024, 1, 2))


@pytest.fixture
def bars_file(tmp_path: Path) -> Path:
    bars = empty("ohlcv-1m", 4)
    bars["instrument_id"] = instrument_id("GLBX.MDP3", "ESH4")
    bars["ts_event"] = [DAY + 123_456_789, DAY + 60 * 10**9, DAY + 120 * 10**9, DAY + 86_400 * 10**9]
    bars["open"] = [1, 9_223_372_036_854_775_806, -2_500_000_001, dbn.UNDEF_PRICE]
    bars["high"] = bars["low"] = bars["close"] = bars["open"]
    bars["volume"] = [0, 1, 2, 3]
    mappings = {"ESH4": [{"d0": "2024-01-02", "d1": "2024-01-03", "s": str(instrument_id("GLBX.MDP3", "ESH4"))}]}
    path = tmp_path / "bars.dbn.zst"
    write_dbn(path, metadata("GLBX.MDP3", "ohlcv-1m", DAY, DAY + 86_400 * 10**9, ["ESH4"], mappings), bars)
    return path


def run_sql(path: Path, batch: int = 1000) -> tuple[duckdb.DuckDBPyConnection, object]:
    store = open_store(path)
    con = duckdb.connect()
    for i, arrow in enumerate(iter_batches(store, batch)):
        con.register("b", arrow)
        con.execute("CREATE TABLE src AS SELECT * FROM b" if i == 0 else "INSERT INTO src SELECT * FROM b")
    con.register("sym", symbology_table(store))
    mapping = load_mappings(CONFIGS / "databento_mappings.yaml")
    compiled = RuleEngine(mapping, load_rules([CONFIGS / "validation" / "databento_rules.yaml"])).compile(
        "ohlcv-1m", "GLBX.MDP3", DAY, DAY + 86_400 * 10**9)
    con.execute(f"CREATE TABLE mapped AS {compiled.mapped}")
    con.execute(f"CREATE TABLE checked AS {compiled.checked}")
    return con, compiled


def test_mapping_given_extreme_prices_converts_exactly_and_undef_to_null(bars_file: Path) -> None:
    con, _ = run_sql(bars_file)

    rows = con.execute("SELECT open, ts_event_ns, epoch_us(ts_event), symbol FROM mapped ORDER BY rec_seq").fetchall()

    assert [r[0] for r in rows] == [Decimal("0.000000001"), Decimal("9223372036.854775806"),
                                    Decimal("-2.500000001"), None]
    assert rows[0][1] == DAY + 123_456_789 and rows[0][2] == (DAY + 123_456_789) // 1000
    assert {r[3] for r in rows[:3]} == {"ESH4"}
    assert rows[3][3] is None, "the 2024-01-03 bar lies outside the symbology interval"


def test_rules_given_bad_rows_name_the_first_failed_rule(bars_file: Path) -> None:
    con, compiled = run_sql(bars_file)

    rows = con.execute(f"SELECT rule, failed_rules FROM ({compiled.quarantine}) ORDER BY rec_seq").fetchall()

    assert rows == [
        ("ohlcv_prices_positive", ["ohlcv_prices_positive"]),
        ("ohlcv_prices_positive", ["ohlcv_prices_positive", "ohlcv_high_ge_low", "ohlcv_open_close_within_range",
                                   "ts_event_in_window", "symbol_present"]),
    ]
    assert con.execute(f"SELECT count(*) FROM ({compiled.standardized})").fetchone() == (2,)


def test_iter_batches_given_small_batch_size_yields_bounded_batches(bars_file: Path) -> None:
    sizes = [b.num_rows for b in iter_batches(open_store(bars_file), 3)]

    assert sizes == [3, 1]
