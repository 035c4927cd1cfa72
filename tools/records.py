"""DBN record layouts per schema and DBN version, as empty numpy arrays the generators fill in bulk."""

from __future__ import annotations

from datetime import UTC, date, datetime

import databento_dbn as dbn
import numpy as np

NS = 1_000_000_000
PRICE = 1_000_000_000  # fixed-point scale
OHLCV_RTYPES = {"ohlcv-1s": (0x20, 1), "ohlcv-1m": (0x21, 60), "ohlcv-1h": (0x22, 3600), "ohlcv-1d": (0x23, 86400)}
RECORDS = {"trades": dbn.TradeMsg, "tbbo": dbn.MBP1Msg, "statistics": dbn.StatMsg,
           "definition": dbn.InstrumentDefMsg, **{s: dbn.OHLCVMsg for s in OHLCV_RTYPES}}
RTYPE = {"trades": 0x00, "tbbo": 0x01, "statistics": 0x18, "definition": 0x13}


def day_start_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS


def record_class(schema: str, version: int = dbn.DBN_VERSION) -> type:
    """The record class of `schema` in DBN `version` (layouts of definitions and statistics differ)."""
    latest = RECORDS[schema]
    if version >= dbn.DBN_VERSION:
        return latest
    return getattr(getattr(dbn, f"v{version}"), latest.__name__, latest)


def empty(schema: str, n: int, version: int = dbn.DBN_VERSION) -> np.ndarray:
    record = record_class(schema, version)
    arr = np.zeros(n, dtype=record._dtypes)
    arr["length"] = record.size_hint // 4
    arr["rtype"] = OHLCV_RTYPES[schema][0] if schema in OHLCV_RTYPES else RTYPE[schema]
    arr["publisher_id"] = 1
    return arr


def has(arr: np.ndarray, name: str) -> bool:
    """Whether this DBN version's layout has the field (older versions lack some)."""
    return name in (arr.dtype.names or ())


class Settable:
    """Sets the fields a record layout has and skips those an older DBN version lacks."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def __setitem__(self, name: str, value: object) -> None:
        if has(self.arr, name):
            self.arr[name] = value
