"""OHLCV-1m through the real client, the replay gateway, the lake and TimescaleDB."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import psycopg
import pyarrow.parquet as pq
from databento import DBNStore

from lake.storage import open_lake
from tests.conftest import DATASET, Gateway, HistRunner
from tools.generate import instrument_id, metadata, write_dbn

INGEST = ["ingest", "--api", "databento", "--dataset", DATASET, "--schema", "ohlcv-1m", "--symbols", "ESH4,NQH4",
          "--start-date", "2024-01-02", "--end-date", "2024-01-04"]


def source_bars(gateway: Gateway) -> np.ndarray:
    """The ESH4 and NQH4 bars of the served files."""
    bars = np.concatenate([DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / f"{day}.dbn.zst").to_ndarray()
                           for day in ("2024-01-02", "2024-01-03")])
    return bars[np.isin(bars["instrument_id"], [instrument_id(DATASET, s) for s in ("ESH4", "NQH4")])]


def test_ingest_given_requirements_command_lands_every_bar_exactly(hist: HistRunner, gateway: Gateway,
                                                                    database_url: str) -> None:
    result = hist(*INGEST)

    assert "load: 1 chunks loaded" in result.stdout, "two days of minute bars: one request (an ISO week)"
    bars = source_bars(gateway)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT instrument_id, ts_event_ns, extract(epoch from ts_event)::numeric, symbol, interval,"
            " open, high, low, close, volume FROM ohlcv_data ORDER BY ts_event_ns, instrument_id").fetchall()
    assert len(rows) == len(bars)
    expected = sorted(bars.tolist(), key=lambda r: (r[4], r[3]))
    symbols = {instrument_id(DATASET, s): s for s in ("ESH4", "NQH4")}
    for row, bar in zip(rows, expected, strict=True):
        _length, _rtype, _publisher, iid, ts_event, open_, high, low, close, volume = bar
        assert row[0] == iid and row[1] == ts_event and row[3] == symbols[iid] and row[4] == "1m"
        assert row[2] * 1_000_000_000 == ts_event  # bar open time, whole minutes
        assert [p * 1_000_000_000 for p in row[5:9]] == [open_, high, low, close]
        assert isinstance(row[5], Decimal) and row[9] == volume


def test_ingest_given_second_identical_run_adds_no_rows_and_requests_nothing(hist: HistRunner, gateway: Gateway,
                                                                             database_url: str) -> None:
    hist(*INGEST)
    first_requests = len(gateway.requests())

    second = hist(*INGEST)

    assert first_requests == 1
    assert len(gateway.requests()) == 1, "a rerun must not download a committed chunk again"
    assert "1 already in the lake" in second.stdout and "0 rows" in second.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ohlcv_data").fetchone() == (len(source_bars(gateway)),)
        assert conn.execute("SELECT count(*) FROM hist_chunk_loads").fetchone() == (1,)


def test_ingest_given_overlapping_chunk_keeps_one_copy_of_each_bar(hist: HistRunner, gateway: Gateway,
                                                                   database_url: str) -> None:
    hist(*INGEST)
    # another request covering ESH4's bars again: by instrument id (by ESH4 the lake holds them already)
    hist(*INGEST[:8], str(instrument_id(DATASET, "ESH4")), *INGEST[9:], "--stype-in", "instrument_id",
         "--chunk-days", "1")

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM hist_chunk_loads").fetchone() == (3,)
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (instrument_id, ts_event_ns)) FROM ohlcv_data").fetchone()  # type: ignore[misc]
    assert total == distinct == len(source_bars(gateway))


def test_ingest_given_bar_with_high_below_low_quarantines_it(hist: HistRunner, gateway: Gateway,
                                                             database_url: str) -> None:
    day = gateway.data / "XTST.BAD" / "ohlcv-1m" / "2024-01-02.dbn.zst"
    bars = DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / "2024-01-02.dbn.zst").to_ndarray()[:10].copy()
    bars = bars[bars["instrument_id"] == instrument_id(DATASET, "ESH4")]
    bad_ts = int(bars["ts_event"][3])
    bars["high"][3], bars["low"][3] = bars["low"][3], bars["high"][3] + 10**9
    mappings = {"ESH4": [{"d0": "2024-01-02", "d1": "2024-01-03", "s": str(instrument_id(DATASET, "ESH4"))}]}
    write_dbn(day, metadata("XTST.BAD", "ohlcv-1m", 0, 0, ["ESH4"], mappings), bars)
    (gateway.data / "XTST.BAD" / "symbology.json").write_text(json.dumps({"raw_symbol": mappings}))

    result = hist("ingest", "--dataset", "XTST.BAD", "--schema", "ohlcv-1m", "--symbols", "ESH4",
                  "--start-date", "2024-01-02", "--end-date", "2024-01-03")

    assert "1 quarantined" in result.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ohlcv_data").fetchone() == (len(bars) - 1,)
        assert conn.execute("SELECT count(*) FROM ohlcv_data WHERE ts_event_ns = %s", (bad_ts,)).fetchone() == (0,)
    event = next(iter(open_lake(hist.lake).manifest().latest("transform").values()))
    quarantine = event.file("quarantine")
    assert quarantine is not None and quarantine.records == 1
    table = pq.read_table(hist.lake / quarantine.path).to_pylist()
    assert table[0]["rule"] == "ohlcv_high_ge_low" and table[0]["ts_event_ns"] == bad_ts
    assert table[0]["high"] * 10**9 == int(bars["high"][3])
