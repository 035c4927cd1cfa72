"""DBN -> Arrow batches -> the RuleEngine's SQL: exact decimals, NULL sentinels, bounded batches, and
every validation rule sending a record built to fail it to quarantine under its name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import databento_dbn as dbn
import duckdb
import numpy as np
import pytest

from schemas.mappings import load_mappings, load_rules
from stages.transform.decode import iter_batches, open_store, symbology_table
from stages.transform.rule_engine import CompiledTransform, RuleEngine
from stages.transform.runner import SourceStream
from tools.generate import TICK, day_records, day_start_ns, empty, instrument_id, metadata, write_dbn

CONFIGS = Path(__file__).parents[2] / "configs"
MAPPING = load_mappings(CONFIGS / "databento_mappings.yaml")
RULES = load_rules([CONFIGS / "validation" / "databento_rules.yaml"])
DAY = day_start_ns(date(2024, 1, 2))
END = DAY + 86_400 * 10**9
ES = instrument_id("GLBX.MDP3", "ESH4")
MAPPINGS = {"ESH4": [{"d0": "2024-01-02", "d1": "2024-01-04", "s": str(ES)}]}


def write(path: Path, schema: str, records: np.ndarray) -> Path:
    write_dbn(path, metadata("GLBX.MDP3", schema, DAY, END, ["ESH4"], MAPPINGS), records)
    return path


def run_sql(path: Path, schema: str = "ohlcv-1m", batch: int = 1000
            ) -> tuple[duckdb.DuckDBPyConnection, CompiledTransform]:
    store = open_store(path)
    con = duckdb.connect()
    source = SourceStream(store, batch)
    con.register("sym", symbology_table(store))
    compiled = RuleEngine(MAPPING, RULES).compile(schema, "GLBX.MDP3", DAY, END, source.types)
    source.append_to_mapped(con, compiled.rows, compiled.filtered)
    for statement in compiled.setup:
        con.execute(statement)
    return con, compiled


@pytest.fixture
def bars_file(tmp_path: Path) -> Path:
    bars = empty("ohlcv-1m", 4)
    bars["instrument_id"] = ES
    bars["ts_event"] = [DAY + 123_456_789, DAY + 60 * 10**9, DAY + 120 * 10**9, END]
    bars["open"] = [1, 9_223_372_036_854_775_806, -2_500_000_001, dbn.UNDEF_PRICE]
    bars["high"] = bars["low"] = bars["close"] = bars["open"]
    bars["volume"] = [0, 1, 2, 3]
    return write(tmp_path / "bars.dbn.zst", "ohlcv-1m", bars)


def test_mapping_given_extreme_prices_converts_exactly_and_undef_to_null(bars_file: Path) -> None:
    con, _ = run_sql(bars_file)

    rows = con.execute("SELECT open, ts_event_ns, epoch_us(ts_event), symbol FROM mapped ORDER BY rec_seq").fetchall()

    assert [r[0] for r in rows] == [Decimal("0.000000001"), Decimal("9223372036.854775806"),
                                    Decimal("-2.500000001"), None]
    assert rows[0][1] == DAY + 123_456_789 and rows[0][2] == (DAY + 123_456_789) // 1000
    assert {r[3] for r in rows} == {"ESH4"}


def test_rules_given_bad_rows_list_every_failed_rule(bars_file: Path) -> None:
    con, compiled = run_sql(bars_file)

    rows = con.execute(f"SELECT rule, failed_rules FROM ({compiled.quarantine}) ORDER BY rec_seq").fetchall()

    assert rows == [  # a negative price is legal (spreads): only the bar with no prices fails
        ("ohlcv_prices_present", ["ohlcv_prices_present", "ohlcv_high_ge_low", "ohlcv_open_close_within_range",
                                  "ts_event_in_window"]),
    ]
    assert con.execute(f"SELECT count(*) FROM ({compiled.standardized})").fetchone() == (3,)
    assert con.execute(compiled.warnings).fetchall() == [("ohlcv_prices_positive", 1)]


def test_iter_batches_given_small_batch_size_yields_bounded_batches(bars_file: Path) -> None:
    sizes = [b.num_rows for b in iter_batches(open_store(bars_file), 3)]

    assert sizes == [3, 1]


def setter(**values: object) -> Callable[[np.ndarray], None]:
    def mutate(record: np.ndarray) -> None:
        for name, value in values.items():
            record[name] = value
    return mutate


def prices(delta: int) -> Callable[[np.ndarray], None]:
    def mutate(record: np.ndarray) -> None:
        record["open"] = record["high"] + delta
    return mutate


OTHER_INSTRUMENT = setter(instrument_id=ES + 1)
Case = tuple[str, str, Callable[[np.ndarray], None]]
CASES: list[Case] = [
    ("ohlcv-1m", "ohlcv_prices_present", setter(close=dbn.UNDEF_PRICE)),
    ("ohlcv-1m", "ohlcv_high_ge_low", lambda r: setter(high=r["low"] - TICK)(r)),
    ("ohlcv-1m", "ohlcv_open_close_within_range", prices(TICK)),
    ("ohlcv-1m", "ohlcv_volume_non_negative", setter(volume=2**64 - 5)),
    ("ohlcv-1m", "ts_event_in_window", setter(ts_event=END + 60 * 10**9)),
    ("trades", "trade_price_present", setter(price=dbn.UNDEF_PRICE)),
    ("trades", "trade_size_positive", setter(size=0)),
    ("trades", "trade_side_valid", setter(side=b"X")),
    ("trades", "ts_event_defined", setter(ts_event=dbn.UNDEF_TIMESTAMP)),
    ("trades", "ts_recv_in_window", setter(ts_recv=END + 1)),
    ("tbbo", "tbbo_trade_price_present", setter(price=dbn.UNDEF_PRICE)),
    ("tbbo", "trade_size_positive", setter(size=0)),
    ("tbbo", "trade_side_valid", setter(side=b"?")),
    ("tbbo", "ts_event_defined", setter(ts_event=dbn.UNDEF_TIMESTAMP)),
    ("tbbo", "ts_recv_in_window", setter(ts_recv=DAY - 1)),
    ("statistics", "statistics_value_present", setter(price=dbn.UNDEF_PRICE, quantity=dbn.UNDEF_STAT_QUANTITY)),
    ("statistics", "statistics_update_action_valid", setter(update_action=7)),
    ("statistics", "ts_event_defined", setter(ts_event=dbn.UNDEF_TIMESTAMP)),
    ("statistics", "ts_recv_in_window", setter(ts_recv=END)),
    ("definition", "definition_required_fields", setter(raw_symbol=b"")),
    ("definition", "ts_recv_in_window", setter(ts_recv=END + 5)),
]
# What is legal at some venue is only counted: the record still lands.
WARN_CASES: list[Case] = [
    ("ohlcv-1m", "ohlcv_prices_positive", setter(open=-TICK, high=-TICK, low=-TICK, close=-TICK)),
    ("ohlcv-1m", "symbol_present", OTHER_INSTRUMENT),
    ("trades", "trade_price_positive", setter(price=0)),
    ("trades", "symbol_present", OTHER_INSTRUMENT),
    ("tbbo", "tbbo_trade_price_positive", setter(price=-TICK)),
    ("tbbo", "tbbo_bid_le_ask", lambda r: setter(bid_px_00=r["ask_px_00"] + TICK)(r)),
    ("tbbo", "symbol_present", OTHER_INSTRUMENT),
    ("statistics", "symbol_present", OTHER_INSTRUMENT),
    ("definition", "definition_tick_size_present", setter(min_price_increment=dbn.UNDEF_PRICE)),
    ("definition", "definition_expiration_for_derivatives", setter(expiration=dbn.UNDEF_TIMESTAMP)),
    ("definition", "definition_strike_for_options", setter(instrument_class=b"C")),
    ("definition", "symbol_present", OTHER_INSTRUMENT),
]
KINDS = {s: MAPPING.schema_mapping(s).record for s in ("ohlcv-1m", "trades", "tbbo", "statistics", "definition")}


@pytest.mark.parametrize(("severity", "cases"), [("quarantine", CASES), ("warn", WARN_CASES)])
def test_cases_cover_every_rule(severity: str, cases: list[Case]) -> None:
    every = {(schema, r.name) for schema, kind in KINDS.items() for r in RULES.by_kind[kind] if r.severity == severity}
    assert every == {(schema, rule) for schema, rule, _ in cases}


def three_records_second_mutated(schema: str, mutate: Callable[[np.ndarray], None], tmp_path: Path
                                 ) -> tuple[duckdb.DuckDBPyConnection, CompiledTransform]:
    rng = np.random.default_rng(3)
    records = day_records(rng, schema, "GLBX.MDP3", "ESH4", date(2024, 1, 2), trades_per_day=3)[:3].copy()
    if len(records) < 3:  # one definition a day: three copies of a good one
        records = records[:1].repeat(3)
    mutate(records[1:2])
    return run_sql(write(tmp_path / "one.dbn.zst", schema, records), schema)


@pytest.mark.parametrize(("schema", "rule", "mutate"), CASES, ids=[f"{s}-{r}" for s, r, _ in CASES])
def test_rule_given_record_built_to_fail_it_quarantines_it_by_name(
        schema: str, rule: str, mutate: Callable[[np.ndarray], None], tmp_path: Path) -> None:
    con, compiled = three_records_second_mutated(schema, mutate, tmp_path)

    quarantined = con.execute(f"SELECT rule, rec_seq FROM ({compiled.quarantine})").fetchall()

    assert quarantined == [(rule, 1)]
    assert con.execute(f"SELECT count(*) FROM ({compiled.standardized})").fetchone() == (2,)


@pytest.mark.parametrize(("schema", "rule", "mutate"), WARN_CASES, ids=[f"{s}-{r}" for s, r, _ in WARN_CASES])
def test_warn_rule_given_record_built_to_fail_it_counts_it_and_stores_it(
        schema: str, rule: str, mutate: Callable[[np.ndarray], None], tmp_path: Path) -> None:
    con, compiled = three_records_second_mutated(schema, mutate, tmp_path)

    assert con.execute(f"SELECT count(*) FROM ({compiled.quarantine})").fetchone() == (0,)
    assert con.execute(f"SELECT count(*) FROM ({compiled.standardized})").fetchone() == (3,)
    assert (rule, 1) in con.execute(compiled.warnings).fetchall()
