"""Synthetic Databento data for the demo, the tests and the benchmark, written with databento_dbn.

One zstd DBN file per (dataset, schema, UTC day) under <out>/<dataset>/<schema>/<day>.dbn.zst, plus
<out>/<dataset>/symbology.json, which the replay gateway serves. Record arrays are filled with numpy
(no Python object per record), so tens of millions of records take seconds. Deterministic by seed.

    python tools/generate.py --out data --dataset GLBX.MDP3 --symbols ESH4,NQH4 \
        --start 2024-01-02 --end 2024-01-04 --schemas ohlcv-1m,trades --trades-per-day 50000
"""

from __future__ import annotations

import argparse
import json
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import zstandard

NS = 1_000_000_000
PRICE = 1_000_000_000  # fixed-point scale
OHLCV_RTYPES = {"ohlcv-1s": (0x20, 1), "ohlcv-1m": (0x21, 60), "ohlcv-1h": (0x22, 3600), "ohlcv-1d": (0x23, 86400)}
RECORDS = {"trades": dbn.TradeMsg, "tbbo": dbn.MBP1Msg, "statistics": dbn.StatMsg,
           "definition": dbn.InstrumentDefMsg, **{s: dbn.OHLCVMsg for s in OHLCV_RTYPES}}
RTYPE = {"trades": 0x00, "tbbo": 0x01, "statistics": 0x18, "definition": 0x13}
ALL_SCHEMAS = tuple(RECORDS)
BAR_ACTIVITY = {"ohlcv-1s": 0.25, "ohlcv-1m": 0.9, "ohlcv-1h": 1.0, "ohlcv-1d": 1.0}
TICK = PRICE // 4  # 0.25
HALT = (21 * 3600, 22 * 3600)  # the daily trading halt, in seconds of the UTC day: no trades, no bars


def instrument_id(dataset: str, symbol: str) -> int:
    """A stable instrument id per (dataset, symbol), as a vendor would assign."""
    return 1000 + zlib.crc32(f"{dataset}/{symbol}".encode()) % 900_000


def base_price(symbol: str) -> int:
    return (1000 + zlib.crc32(symbol.encode()) % 9000) * PRICE


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


def walk(rng: np.random.Generator, start: int, n: int) -> np.ndarray:
    """A random walk on the 0.25 tick grid, always positive."""
    steps = rng.integers(-2, 3, size=n) * TICK
    return np.maximum(start + np.cumsum(steps), 10 * PRICE)


def ohlcv(rng: np.random.Generator, schema: str, iid: int, symbol: str, day: date) -> np.ndarray:
    _, seconds = OHLCV_RTYPES[schema]
    slots = 86400 // seconds
    starts = np.arange(slots) * seconds
    in_halt = (starts >= HALT[0]) & (starts < HALT[1]) if seconds < 86400 else np.zeros(slots, dtype=bool)
    active = np.flatnonzero((rng.random(slots) < BAR_ACTIVITY[schema]) & ~in_halt)
    n = len(active)
    arr = empty(schema, n)
    arr["instrument_id"] = iid
    arr["ts_event"] = day_start_ns(day) + active.astype(np.uint64) * seconds * NS
    opens = walk(rng, base_price(symbol), n)
    closes = opens + rng.integers(-4, 5, size=n) * TICK
    closes = np.maximum(closes, 10 * PRICE)
    arr["open"], arr["close"] = opens, closes
    arr["high"] = np.maximum(opens, closes) + rng.integers(0, 4, size=n) * TICK
    arr["low"] = np.minimum(opens, closes) - rng.integers(0, 4, size=n) * TICK
    arr["volume"] = rng.integers(1, 500, size=n)
    return arr


def trade_like(rng: np.random.Generator, schema: str, iid: int, symbol: str, day: date, n: int) -> np.ndarray:
    arr = empty(schema, n)
    arr["instrument_id"] = iid
    offsets = rng.integers(0, (86400 - (HALT[1] - HALT[0])) * NS, size=n, dtype=np.int64)
    offsets[offsets >= HALT[0] * NS] += (HALT[1] - HALT[0]) * NS  # skip the halt
    ts_recv = day_start_ns(day) + np.sort(offsets).astype(np.uint64)
    delay = rng.integers(1_000, 50_000, size=n).astype(np.uint64)
    arr["ts_recv"] = ts_recv
    arr["ts_event"] = ts_recv - delay
    arr["ts_in_delta"] = rng.integers(1_000, 20_000, size=n)
    arr["price"] = walk(rng, base_price(symbol), n)
    arr["size"] = rng.integers(1, 50, size=n)
    arr["action"] = b"T"
    arr["side"] = rng.choice(np.array([b"A", b"B", b"N"]), size=n, p=[0.48, 0.48, 0.04])
    arr["flags"] = 128
    arr["sequence"] = np.arange(1, n + 1, dtype=np.uint32) + rng.integers(0, 1000)
    if schema == "tbbo":
        spread = rng.integers(1, 3, size=n) * TICK
        arr["bid_px_00"] = arr["price"] - spread
        arr["ask_px_00"] = arr["price"] + spread
        arr["bid_sz_00"] = rng.integers(1, 200, size=n)
        arr["ask_sz_00"] = rng.integers(1, 200, size=n)
        arr["bid_ct_00"] = rng.integers(1, 30, size=n)
        arr["ask_ct_00"] = rng.integers(1, 30, size=n)
    return arr


STAT_TYPES = (1, 3, 4, 5, 6, 9)  # opening, settlement, session low/high, cleared volume, open interest


def statistics(rng: np.random.Generator, iid: int, symbol: str, day: date, version: int) -> np.ndarray:
    n = len(STAT_TYPES)
    arr = empty("statistics", n, version)
    undef_quantity = np.iinfo(arr.dtype["quantity"]).max  # UNDEF_STAT_QUANTITY of this version
    start = day_start_ns(day)
    arr["instrument_id"] = iid
    arr["ts_recv"] = start + np.arange(1, n + 1, dtype=np.uint64) * 3600 * NS
    arr["ts_event"] = arr["ts_recv"] - 10_000
    arr["stat_type"] = STAT_TYPES
    arr["update_action"] = 1
    arr["sequence"] = np.arange(1, n + 1)
    price = base_price(symbol) + rng.integers(-20, 20, size=n) * TICK
    is_quantity = np.isin(arr["stat_type"], (6, 9))
    arr["price"] = np.where(is_quantity, dbn.UNDEF_PRICE, price)
    arr["quantity"] = np.where(is_quantity, rng.integers(1_000, 500_000, size=n), undef_quantity)
    arr["ts_ref"] = np.where(np.isin(arr["stat_type"], (3, 6, 9)), start, dbn.UNDEF_TIMESTAMP)
    arr["stat_flags"] = 0
    return arr


def definition(iid: int, symbol: str, day: date, version: int) -> np.ndarray:
    arr = empty("definition", 1, version)
    record = _Settable(arr[0])
    start = day_start_ns(day)
    record["instrument_id"] = iid
    record["ts_recv"] = start + 60 * NS
    record["ts_event"] = start + 30 * NS
    record["raw_symbol"] = symbol.encode()
    record["instrument_class"] = b"F"
    record["security_update_action"] = b"A"
    record["min_price_increment"] = TICK
    record["display_factor"] = PRICE
    record["high_limit_price"] = base_price(symbol) * 11 // 10
    record["low_limit_price"] = base_price(symbol) * 9 // 10
    record["strike_price"] = dbn.UNDEF_PRICE
    record["expiration"] = start + 80 * 86400 * NS
    record["activation"] = start - 300 * 86400 * NS
    record["contract_multiplier"] = 50
    record["min_lot_size_round_lot"] = 1
    record["maturity_year"], record["maturity_month"], record["maturity_day"] = 2024, 3, 15
    record["underlying_id"] = 0
    record["raw_instrument_id"] = iid
    record["asset"] = symbol[:2].encode()
    record["exchange"] = b"XCME"
    record["currency"] = b"USD"
    record["settl_currency"] = b"USD"
    record["security_type"] = b"FUT"
    record["cfi"] = b"FFIXSX"
    record["group"] = symbol[:2].encode()
    record["unit_of_measure"] = b"IPNT"
    record["unit_of_measure_qty"] = 50 * PRICE
    record["match_algorithm"] = b"F"
    for field in ("max_price_variation", "min_price_increment_amount", "price_ratio", "leg_price", "leg_delta"):
        record[field] = dbn.UNDEF_PRICE
    return arr


class _Settable:
    """Sets the fields a record layout has and skips those an older DBN version lacks."""

    def __init__(self, record: np.void) -> None:
        self.record = record

    def __setitem__(self, name: str, value: object) -> None:
        if name in (self.record.dtype.names or ()):
            self.record[name] = value


def day_records(rng: np.random.Generator, schema: str, dataset: str, symbol: str, day: date,
                trades_per_day: int, version: int = dbn.DBN_VERSION) -> np.ndarray:
    iid = instrument_id(dataset, symbol)
    if schema in OHLCV_RTYPES:
        return ohlcv(rng, schema, iid, symbol, day)
    if schema in ("trades", "tbbo"):
        return trade_like(rng, schema, iid, symbol, day, trades_per_day)
    if schema == "statistics":
        return statistics(rng, iid, symbol, day, version)
    return definition(iid, symbol, day, version)


def index_ts(arr: np.ndarray) -> np.ndarray:
    return arr["ts_recv"] if "ts_recv" in (arr.dtype.names or ()) else arr["ts_event"]


Symbology = dict[str, dict[str, list[dict[str, str]]]]


def symbology(dataset: str, symbols: list[str], start: date, end: date) -> Symbology:
    """Per stype_in, each symbol's intervals [d0, d1) and instrument id: raw symbols for the whole
    range; a parent (ES.FUT) for all contracts of a root (ESH4 -> ES); a continuous front contract
    (ES.c.0) that rolls from each contract to the next at equal shares of the range."""
    def interval(d0: date, d1: date, symbol: str) -> dict[str, str]:
        return {"d0": d0.isoformat(), "d1": d1.isoformat(), "s": str(instrument_id(dataset, symbol))}

    days = (end - start).days
    roots: dict[str, list[str]] = {}
    for symbol in symbols:
        roots.setdefault(symbol[:-2], []).append(symbol)
    continuous: dict[str, list[dict[str, str]]] = {}
    for root, contracts in roots.items():
        contracts.sort(key=lambda c: (c[-1], "FGHJKMNQUVXZ".find(c[-2])))
        bounds = [start + timedelta(days=days * i // len(contracts)) for i in range(len(contracts))] + [end]
        continuous[f"{root}.c.0"] = [interval(bounds[i], bounds[i + 1], c) for i, c in enumerate(contracts)
                                     if bounds[i] < bounds[i + 1]]
    return {
        "raw_symbol": {s: [interval(start, end, s)] for s in symbols},
        "parent": {f"{root}.FUT": [interval(start, end, c) for c in cs] for root, cs in roots.items()},
        "continuous": continuous,
    }


def metadata(dataset: str, schema: str, start_ns: int, end_ns: int, symbols: list[str],
             mappings: dict[str, list[dict[str, str]]], stype_in: str = "raw_symbol",
             stype_out: str = "instrument_id", not_found: list[str] | None = None,
             version: int = dbn.DBN_VERSION) -> bytes:
    """Encoded DBN metadata whose mappings carry the symbology of `symbols`."""
    objects = [
        SimpleNamespace(raw_symbol=symbol, intervals=[
            SimpleNamespace(start_date=date.fromisoformat(i["d0"]), end_date=date.fromisoformat(i["d1"]),
                            symbol=i["s"]) for i in intervals])
        for symbol, intervals in mappings.items()
    ]
    return bytes(dbn.Metadata(
        dataset=dataset, start=start_ns, end=end_ns, stype_in=dbn.SType(stype_in),
        stype_out=dbn.SType(stype_out), schema=dbn.Schema(schema), symbols=symbols, partial=[],
        not_found=not_found or [], mappings=objects, version=version,
    ).encode())


def write_dbn(path: Path, meta: bytes, records: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as writer:
        writer.write(meta)
        writer.write(records.tobytes())


def generate(out: Path, dataset: str, symbols: list[str], start: date, end: date, schemas: list[str],
             seed: int, trades_per_day: int, version: int = dbn.DBN_VERSION) -> int:
    """Write every (schema, day) file and the symbology; returns the number of records written."""
    total = 0
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    mappings = symbology(dataset, symbols, start, end)
    for schema in schemas:
        for day in days:
            rng = np.random.default_rng([seed, zlib.crc32(f"{schema}/{day}".encode())])
            parts = [day_records(rng, schema, dataset, s, day, trades_per_day, version) for s in symbols]
            records = np.concatenate(parts)
            records = records[np.argsort(index_ts(records), kind="stable")]
            day_ns = day_start_ns(day)
            meta = metadata(dataset, schema, day_ns, day_ns + 86400 * NS, symbols, mappings["raw_symbol"],
                            version=version)
            write_dbn(out / dataset / schema / f"{day.isoformat()}.dbn.zst", meta, records)
            total += len(records)
    sym_path = out / dataset / "symbology.json"
    existing = json.loads(sym_path.read_text()) if sym_path.exists() else {}
    for stype, entries in mappings.items():
        existing.setdefault(stype, {}).update(entries)
    sym_path.write_text(json.dumps(existing, indent=1))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", default="GLBX.MDP3")
    parser.add_argument("--symbols", default="ESH4,NQH4")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 2))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2024, 1, 4), help="exclusive")
    parser.add_argument("--schemas", default=",".join(ALL_SCHEMAS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trades-per-day", type=int, default=20_000, help="per symbol")
    parser.add_argument("--dbn-version", type=int, choices=(1, 2, 3), default=dbn.DBN_VERSION)
    args = parser.parse_args()
    schemas = [s for s in args.schemas.split(",") if s]
    unknown = set(schemas) - set(ALL_SCHEMAS)
    if unknown:
        parser.error(f"unknown schemas: {', '.join(sorted(unknown))}")
    n = generate(args.out, args.dataset, args.symbols.split(","), args.start, args.end, schemas, args.seed,
                 args.trades_per_day, args.dbn_version)
    print(f"generated {n:,} records in {args.out}")


if __name__ == "__main__":
    main()
