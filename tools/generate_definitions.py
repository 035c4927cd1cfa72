"""Instrument definitions shaped like each venue's real ones (symbol conventions: tools/instruments.py).

- futures (CME): every field set;
- calendar spreads: class S, one record per leg (leg_count 2, leg_index 0 and 1, leg_* of that leg),
  identical otherwise; DBN v1/v2 have no leg fields, so one record there;
- options: strike, underlying and underlying_id set, no min_price_increment, no price limits;
- equities: the shape of Databento's XNAS.ITCH sample, nearly every field unset (its type's maximum);
- ICE (datasets IFEU.* and IFUS.*): futures and spreads without display_factor and with ts_event 0.
"""

from __future__ import annotations

from datetime import date

import databento_dbn as dbn
import numpy as np

from tools.instruments import Instrument, base_price, instrument_id, parse
from tools.records import NS, PRICE, Settable, day_start_ns, empty, has

HEADER = ("length", "rtype", "publisher_id", "instrument_id", "ts_event", "ts_recv")
CFI = {"F": b"FFIXSX", "S": b"FMIXSX", "C": b"OCAFPS", "P": b"OPAFPS"}
EQUITY_DISPLAY_FACTOR = 100_000 * PRICE  # as in the XNAS.ITCH sample
LEG_SIDES = (b"B", b"A")  # a calendar spread buys the front leg and sells the back one


def definition(dataset: str, symbol: str, day: date, version: int, publisher: int) -> np.ndarray:
    """The day's definition records of one symbol (two for a spread in DBN v3)."""
    instrument = parse(symbol)
    arr = equity(dataset, instrument, day, version) if instrument.kind == "equity" else \
        derivative(dataset, instrument, day, version)
    arr["publisher_id"] = publisher
    return legs(dataset, instrument, arr) if instrument.kind == "spread" and has(arr, "leg_count") else arr


def exchange(dataset: str) -> bytes:
    venue = dataset.split(".")[0]
    return b"XCME" if venue == "GLBX" else venue.encode()


def derivative(dataset: str, instrument: Instrument, day: date, version: int) -> np.ndarray:
    arr = empty("definition", 1, version)
    record = Settable(arr)
    start = day_start_ns(day)
    iid = instrument_id(dataset, instrument.symbol)
    option = instrument.kind == "option"
    ice = dataset.startswith(("IFEU", "IFUS"))
    base = base_price(instrument.symbol)
    band = max(abs(base) // 10, 100 * instrument.tick)
    record["instrument_id"] = iid
    record["ts_recv"] = start + 60 * NS
    record["ts_event"] = 0 if ice else start + 30 * NS
    record["raw_symbol"] = instrument.symbol.encode()
    record["instrument_class"] = instrument.instrument_class.encode()
    record["security_update_action"] = b"A"
    record["min_price_increment"] = dbn.UNDEF_PRICE if option else instrument.tick
    record["display_factor"] = dbn.UNDEF_PRICE if ice else PRICE
    record["high_limit_price"] = dbn.UNDEF_PRICE if option else base + band
    record["low_limit_price"] = dbn.UNDEF_PRICE if option else base - band
    record["strike_price"] = instrument.strike if option else dbn.UNDEF_PRICE
    record["expiration"] = start + 80 * 86400 * NS
    record["activation"] = start - 300 * 86400 * NS
    record["contract_multiplier"] = 50
    record["min_lot_size_round_lot"] = 1
    record["maturity_year"], record["maturity_month"], record["maturity_day"] = 2024, 3, 15
    record["raw_instrument_id"] = iid
    record["asset"] = instrument.root.encode()
    record["exchange"] = exchange(dataset)
    record["currency"] = b"USD"
    record["settl_currency"] = b"USD"
    record["security_type"] = b"FUT"
    record["cfi"] = CFI[instrument.instrument_class]
    record["group"] = instrument.root.encode()
    record["unit_of_measure"] = b"IPNT"
    record["unit_of_measure_qty"] = 50 * PRICE
    record["match_algorithm"] = b"F"
    for field in ("max_price_variation", "min_price_increment_amount", "price_ratio", "leg_price", "leg_delta"):
        record[field] = dbn.UNDEF_PRICE
    if underlying := instrument.underlying:
        record["underlying"] = underlying.symbol.encode()
        record["underlying_id"] = instrument_id(dataset, underlying.symbol)
        record["strike_price_currency"] = b"USD"
        record["security_type"] = b"OOF" if underlying.kind == "future" else b"OPT"
    return arr


def equity(dataset: str, instrument: Instrument, day: date, version: int) -> np.ndarray:
    """Unset integers at their type's maximum, except the ids and leg counters the sample leaves at 0."""
    arr = empty("definition", 1, version)
    for name in arr.dtype.names or ():
        zero = name in (*HEADER, "underlying_id", "channel_id") or \
            (name.startswith("leg_") and name not in ("leg_price", "leg_delta"))
        if arr.dtype[name].kind in "iu" and not zero:
            arr[name] = np.iinfo(arr.dtype[name]).max
    record = Settable(arr)
    iid = instrument_id(dataset, instrument.symbol)
    record["instrument_id"] = iid
    record["ts_recv"] = day_start_ns(day) + 8 * 3600 * NS
    record["ts_event"] = day_start_ns(day) + 8 * 3600 * NS - 10_550
    record["raw_symbol"] = instrument.symbol.encode()
    record["instrument_class"] = b"K"
    record["security_update_action"] = b"A"
    record["display_factor"] = EQUITY_DISPLAY_FACTOR
    record["min_lot_size_round_lot"] = 100
    record["raw_instrument_id"] = iid
    record["exchange"] = exchange(dataset)
    record["match_algorithm"] = b"F"
    record["user_defined_instrument"] = b"N"
    record["leg_side"] = b"N"
    return arr


def legs(dataset: str, spread: Instrument, arr: np.ndarray) -> np.ndarray:
    """One copy of the spread's definition per leg, each describing its leg."""
    out = arr.repeat(2)
    out["leg_count"] = 2
    out["leg_index"] = (0, 1)
    out["leg_instrument_id"] = [instrument_id(dataset, leg) for leg in spread.legs]
    out["leg_raw_symbol"] = [leg.encode() for leg in spread.legs]
    out["leg_instrument_class"] = b"F"
    out["leg_side"] = LEG_SIDES
    out["leg_price"] = [base_price(leg) for leg in spread.legs]
    for field in ("leg_ratio_qty_numerator", "leg_ratio_qty_denominator", "leg_ratio_price_numerator",
                  "leg_ratio_price_denominator"):
        out[field] = 1
    return out
