"""The demo's synthetic data agrees with itself: every bar interval, tbbo and the day's statistics
are derived from the same trades, so a reader checking numbers by eye finds them consistent."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import databento_dbn as dbn
import numpy as np
from databento import DBNStore

from tools.generate import generate

DAY = "2024-01-02"
BARS = ("ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d")


def test_generate_from_tape_derives_bars_tbbo_and_statistics_from_its_trades(tmp_path: Path) -> None:
    generate(tmp_path, "GLBX.MDP3", ["ESH4", "NQH4"], date(2024, 1, 2), date(2024, 1, 3),
             ["trades", "tbbo", "statistics", *BARS], seed=7, trades_per_day=5000, from_tape=True)

    def records(schema: str) -> np.ndarray:
        return DBNStore.from_file(tmp_path / "GLBX.MDP3" / schema / f"{DAY}.dbn.zst").to_ndarray()

    trades, book, stats = records("trades"), records("tbbo"), records("statistics")
    assert len(trades) == 10_000 and np.array_equal(trades["price"], book["price"])
    for iid in np.unique(trades["instrument_id"]):
        mine = trades[trades["instrument_id"] == iid]
        for schema in BARS:
            bars = records(schema)
            bars = bars[bars["instrument_id"] == iid]
            assert int(bars["volume"].sum()) == int(mine["size"].sum()), schema
            assert bars["low"].min() == mine["price"].min() and bars["high"].max() == mine["price"].max(), schema
        (daily,) = records("ohlcv-1d")[records("ohlcv-1d")["instrument_id"] == iid]
        day_stats = stats[(stats["instrument_id"] == iid) & (stats["update_action"] == 1)]
        cleared = day_stats[day_stats["stat_type"] == int(dbn.StatType.CLEARED_VOLUME)]
        low = day_stats[day_stats["stat_type"] == int(dbn.StatType.TRADING_SESSION_LOW_PRICE)]
        assert cleared["quantity"][0] == daily["volume"] and low["price"][0] == daily["low"]
