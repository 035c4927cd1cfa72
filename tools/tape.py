"""One tape per instrument and day, and every schema derived from it: trades are the tape, tbbo the
tape with its book, bars of every interval its aggregation (so 1s, 1m, 1h and 1d volumes add up and
every low is the lowest), and the day's statistics (open, high, low, close, settlement, cleared
volume) its summary. The demo's data, where a reader can check numbers by eye."""

from __future__ import annotations

import databento_dbn as dbn
import numpy as np

from tools.records import NS, OHLCV_RTYPES, empty

TRADE_FIELDS_FROM_TAPE = ("ts_event", "publisher_id", "instrument_id", "ts_recv", "price", "size", "action", "side",
                          "flags", "depth", "sequence", "ts_in_delta")
SUMMARY_STATS = {int(dbn.StatType.OPENING_PRICE): "open", int(dbn.StatType.TRADING_SESSION_HIGH_PRICE): "high",
                 int(dbn.StatType.TRADING_SESSION_LOW_PRICE): "low", int(dbn.StatType.CLOSE_PRICE): "close",
                 int(dbn.StatType.SETTLEMENT_PRICE): "close", int(dbn.StatType.CLEARED_VOLUME): "volume"}


def trades_of(book: np.ndarray) -> np.ndarray:
    """The tbbo records as trades: the same trades without the book."""
    trades = empty("trades", len(book))
    for name in TRADE_FIELDS_FROM_TAPE:
        trades[name] = book[name]
    return trades


def bars_of(trades: np.ndarray, schema: str) -> np.ndarray:
    """OHLCV bars of `schema`'s interval per publisher and instrument: a bar opens at its interval's
    start (ts_event), as Databento's do; intervals without trades have no bar."""
    seconds = OHLCV_RTYPES[schema][1] * NS
    ts = trades["ts_event"].astype(np.int64)
    bucket = ts - ts % seconds
    order = np.lexsort((ts, bucket, trades["instrument_id"], trades["publisher_id"]))
    keys = np.stack([trades["publisher_id"][order].astype(np.int64), trades["instrument_id"][order].astype(np.int64),
                     bucket[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    ends = np.r_[starts[1:], len(order)] - 1
    price, size = trades["price"][order], trades["size"][order].astype(np.uint64)
    bars = empty(schema, len(starts))
    bars["publisher_id"], bars["instrument_id"] = keys[starts, 0], keys[starts, 1]
    bars["ts_event"] = keys[starts, 2].astype(np.uint64)
    bars["open"], bars["close"] = price[starts], price[ends]
    bars["high"], bars["low"] = np.maximum.reduceat(price, starts), np.minimum.reduceat(price, starts)
    bars["volume"] = np.add.reduceat(size, starts)
    return bars[np.argsort(bars["ts_event"], kind="stable")]


def summarize(statistics: np.ndarray, trades: np.ndarray) -> None:
    """Set the day's open, high, low, close, settlement and cleared volume from the trades."""
    day = bars_of(trades, "ohlcv-1d")
    if len(day) == 0:
        return
    summary = {name: day[name][0] for name in ("open", "high", "low", "close", "volume")}
    for stat_type, name in SUMMARY_STATS.items():
        rows = (statistics["stat_type"] == stat_type) & (statistics["update_action"] == 1)
        field = "quantity" if name == "volume" else "price"
        statistics[field][rows] = summary[name]
