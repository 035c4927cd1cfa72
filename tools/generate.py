"""Synthetic Databento data for the demo, the tests and the benchmark, written with databento_dbn.

One zstd DBN file per (dataset, schema, UTC day) under <out>/<dataset>/<schema>/<day>.dbn.zst, plus
<out>/<dataset>/symbology.json, which the replay gateway serves. Record arrays are filled with numpy
(no Python object per record), so tens of millions of records take seconds. Deterministic by seed.

The symbol's shape decides the instrument (tools/instruments.py), so callers pass plain symbols:

    ESH4, NQH4             futures: all day but the 21:00-22:00 UTC halt, every definition field set
    ESH4-ESM4              calendar spread: class S, prices around zero (bars and trades may be <= 0),
                           its definition one record per leg
    NVDA, AAPL             equity (no digit): class K, 09:00-24:00 UTC, definition mostly unset, like
                           XNAS.ITCH's
    "ESH4 C4800"           option (space, C or P, strike): class C/P, strike and underlying set, trades
                           and bars from publishers 1 and 2 for the same instrument at overlapping times

Datasets IFEU.* / IFUS.* (ICE) give futures (and spread) definitions without display_factor and with
ts_event 0.
Spreads, equities and options also get what thin or multi-venue books show: varied trade flags, a
tbbo side left empty (UNDEF_PRICE, size 0). Statistics carry every databento_dbn StatType per
instrument-day (prices or quantities, the other UNDEF; ts_ref only for settlement, cleared volume and
open interest), stat_flags up to 255, and one delete (update_action 2) with price and quantity UNDEF.
The parent symbology (ES.FUT) holds only the root's futures, continuous (ES.c.0) rolls through them,
and ES.OPT holds the root's options. version= writes DBN v1, v2 or v3 layouts.

    python tools/generate.py --out data --dataset GLBX.MDP3 --symbols ESH4,NQH4 \
        --start 2024-01-02 --end 2024-01-04 --schemas ohlcv-1m,trades --trades-per-day 50000
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.generate_definitions import definition
from tools.instruments import TICK, Instrument, Session, base_price, instrument_id, parse, publishers
from tools.records import NS, OHLCV_RTYPES, PRICE, RECORDS, day_start_ns, empty, record_class
from tools.tape import bars_of, summarize, trades_of

__all__ = ["NS", "PRICE", "RECORDS", "TICK", "base_price", "day_records", "day_start_ns", "empty", "generate",
           "index_ts", "instrument_id", "merge_symbology", "metadata", "record_class", "symbology", "write_dbn"]
ALL_SCHEMAS = tuple(RECORDS)
BAR_ACTIVITY = {"ohlcv-1s": 0.25, "ohlcv-1m": 0.9, "ohlcv-1h": 1.0, "ohlcv-1d": 1.0}
STAT_TYPES = tuple(int(t) for t in dbn.StatType.variants())
QUANTITY_STATS = tuple(int(t) for t in dbn.StatType.variants() if "VOLUME" in t.name or t.name == "OPEN_INTEREST")
REFERENCE_STATS = tuple(int(t) for t in (dbn.StatType.SETTLEMENT_PRICE, dbn.StatType.CLEARED_VOLUME,
                                         dbn.StatType.OPEN_INTEREST))
DELETED_STAT = int(dbn.StatType.INDICATIVE_OPENING_PRICE)
STAT_FLAGS = (0, 1, 2, 3, 255)
TRADE_FLAGS = np.array([0, dbn.F_LAST, dbn.F_LAST | dbn.F_PUBLISHER_SPECIFIC, dbn.F_LAST | dbn.F_BAD_TS_RECV],
                       dtype=np.uint8)
EMPTY_SIDE_SHARE = 0.03  # tbbo records with one side of the book empty, for thin books


def clip(prices: np.ndarray, floor: int | None) -> np.ndarray:
    return prices if floor is None else np.maximum(prices, floor)


def walk(rng: np.random.Generator, start: int, n: int, tick: int, floor: int | None) -> np.ndarray:
    """A random walk on the tick grid, kept at or above `floor` (None: free to cross zero)."""
    return clip(start + np.cumsum(rng.integers(-2, 3, size=n) * tick), floor)


def in_session(session: Session, seconds: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(seconds), dtype=bool)
    for opens, closes in session:
        inside |= (seconds >= opens) & (seconds < closes)
    return inside


def session_offsets(rng: np.random.Generator, session: Session, n: int) -> np.ndarray:
    """n sorted uniform ns offsets of the UTC day that fall inside the session."""
    opens = np.array([o for o, _ in session], dtype=np.int64) * NS
    lengths = np.array([c - o for o, c in session], dtype=np.int64) * NS
    ends = np.cumsum(lengths)
    offsets = rng.integers(0, int(ends[-1]), size=n, dtype=np.int64)
    part = np.searchsorted(ends, offsets, side="right")
    return np.sort(offsets - (ends - lengths)[part] + opens[part])


def ohlcv(rng: np.random.Generator, schema: str, iid: int, instrument: Instrument, day: date, publisher: int
          ) -> np.ndarray:
    _, seconds = OHLCV_RTYPES[schema]
    slots = 86400 // seconds
    starts = np.arange(slots) * seconds
    open_slot = in_session(instrument.session, starts) if seconds < 86400 else np.ones(slots, dtype=bool)
    active = np.flatnonzero((rng.random(slots) < BAR_ACTIVITY[schema]) & open_slot)
    n, tick = len(active), instrument.tick
    arr = empty(schema, n)
    arr["publisher_id"] = publisher
    arr["instrument_id"] = iid
    arr["ts_event"] = day_start_ns(day) + active.astype(np.uint64) * seconds * NS
    opens = walk(rng, base_price(instrument.symbol), n, tick, instrument.floor)
    closes = clip(opens + rng.integers(-4, 5, size=n) * tick, instrument.floor)
    arr["open"], arr["close"] = opens, closes
    arr["high"] = np.maximum(opens, closes) + rng.integers(0, 4, size=n) * tick
    arr["low"] = np.minimum(opens, closes) - rng.integers(0, 4, size=n) * tick
    arr["volume"] = rng.integers(1, 500, size=n)
    return arr


def trade_like(rng: np.random.Generator, schema: str, iid: int, instrument: Instrument, day: date, n: int,
               publisher_ids: tuple[int, ...]) -> np.ndarray:
    arr = empty(schema, n)
    arr["instrument_id"] = iid
    ts_recv = day_start_ns(day) + session_offsets(rng, instrument.session, n).astype(np.uint64)
    delay = rng.integers(1_000, 50_000, size=n).astype(np.uint64)
    arr["ts_recv"] = ts_recv
    arr["ts_event"] = ts_recv - delay
    arr["ts_in_delta"] = rng.integers(1_000, 20_000, size=n)
    arr["price"] = walk(rng, base_price(instrument.symbol), n, instrument.tick, instrument.floor)
    arr["size"] = rng.integers(1, 50, size=n)
    arr["action"] = b"T"
    arr["side"] = rng.choice(np.array([b"A", b"B", b"N"]), size=n, p=[0.48, 0.48, 0.04])
    arr["flags"] = dbn.F_LAST
    arr["sequence"] = np.arange(1, n + 1, dtype=np.uint32) + rng.integers(0, 1000)
    if schema == "tbbo":
        spread = rng.integers(1, 3, size=n) * instrument.tick
        arr["bid_px_00"] = arr["price"] - spread
        arr["ask_px_00"] = arr["price"] + spread
        arr["bid_sz_00"] = rng.integers(1, 200, size=n)
        arr["ask_sz_00"] = rng.integers(1, 200, size=n)
        arr["bid_ct_00"] = rng.integers(1, 30, size=n)
        arr["ask_ct_00"] = rng.integers(1, 30, size=n)
    # one venue draws nothing, so a future's records stay what they were before options existed
    arr["publisher_id"] = rng.choice(publisher_ids, size=n) if len(publisher_ids) > 1 else publisher_ids[0]
    if instrument.kind != "future":
        arr["flags"] = rng.choice(TRADE_FLAGS, size=n)
        if schema == "tbbo":
            empty_book_side(rng, arr)
    return arr


def empty_book_side(rng: np.random.Generator, arr: np.ndarray) -> None:
    """Leave the bid or the ask of a few records empty, as a thin book does: UNDEF_PRICE, size 0."""
    chosen = rng.random(len(arr)) < EMPTY_SIDE_SHARE
    bid = rng.random(len(arr)) < 0.5
    for side, rows in (("bid", chosen & bid), ("ask", chosen & ~bid)):
        arr[f"{side}_px_00"][rows] = dbn.UNDEF_PRICE
        arr[f"{side}_sz_00"][rows] = 0
        arr[f"{side}_ct_00"][rows] = 0


def statistics(rng: np.random.Generator, iid: int, instrument: Instrument, day: date, version: int,
               publisher: int) -> np.ndarray:
    """One record per StatType through the day, then a delete of the indicative opening price."""
    types = np.array((*STAT_TYPES, DELETED_STAT), dtype=np.uint16)
    n = len(types)
    arr = empty("statistics", n, version)
    undef_quantity = np.iinfo(arr.dtype["quantity"]).max  # UNDEF_STAT_QUANTITY of this version
    start = day_start_ns(day)
    arr["publisher_id"] = publisher
    arr["instrument_id"] = iid
    arr["ts_recv"] = start + 3600 * NS + np.arange(n, dtype=np.uint64) * (20 * 3600 * NS // n)
    arr["ts_event"] = arr["ts_recv"] - 10_000
    arr["ts_in_delta"] = rng.integers(1_000, 30_000, size=n)
    arr["stat_type"] = types
    arr["update_action"] = np.where(np.arange(n) == n - 1, 2, 1)
    arr["sequence"] = np.arange(1, n + 1)
    tick = instrument.tick
    price = np.select(
        [types == int(dbn.StatType.NET_CHANGE), types == int(dbn.StatType.VOLATILITY),
         types == int(dbn.StatType.DELTA)],
        [rng.integers(-40, 41, size=n) * tick, rng.integers(10, 80, size=n) * PRICE // 100,
         rng.integers(-100, 101, size=n) * PRICE // 100],
        base_price(instrument.symbol) + rng.integers(-20, 20, size=n) * tick)
    is_quantity = np.isin(types, QUANTITY_STATS)
    deleted = arr["update_action"] == 2
    arr["price"] = np.where(is_quantity | deleted, dbn.UNDEF_PRICE, price)
    arr["quantity"] = np.where(is_quantity & ~deleted, rng.integers(1_000, 500_000, size=n), undef_quantity)
    arr["ts_ref"] = np.where(np.isin(types, REFERENCE_STATS) & ~deleted, np.uint64(start),
                             np.uint64(dbn.UNDEF_TIMESTAMP))
    arr["stat_flags"] = rng.permutation(np.resize(STAT_FLAGS, n))
    return arr


def day_records(rng: np.random.Generator, schema: str, dataset: str, symbol: str, day: date,
                trades_per_day: int, version: int = dbn.DBN_VERSION) -> np.ndarray:
    iid, instrument, publisher_ids = instrument_id(dataset, symbol), parse(symbol), publishers(dataset, symbol)
    if schema in OHLCV_RTYPES:
        return np.concatenate([ohlcv(rng, schema, iid, instrument, day, p) for p in publisher_ids])
    if schema in ("trades", "tbbo"):
        return trade_like(rng, schema, iid, instrument, day, trades_per_day, publisher_ids)
    if schema == "statistics":
        return statistics(rng, iid, instrument, day, version, publisher_ids[0])
    return definition(dataset, symbol, day, version, publisher_ids[0])


def index_ts(arr: np.ndarray) -> np.ndarray:
    return arr["ts_recv"] if "ts_recv" in (arr.dtype.names or ()) else arr["ts_event"]


Symbology = dict[str, dict[str, list[dict[str, str]]]]


def symbology(dataset: str, symbols: list[str], start: date, end: date) -> Symbology:
    """Per stype_in, each symbol's intervals [d0, d1) and instrument id: raw symbols for the whole
    range; a parent for all futures of a root (ES.FUT: ESH4, ESM4, not spreads) and for its options
    (ES.OPT); a continuous front future (ES.c.0) that rolls from each contract to the next at equal
    shares of the range."""
    def interval(d0: date, d1: date, symbol: str) -> dict[str, str]:
        return {"d0": d0.isoformat(), "d1": d1.isoformat(), "s": str(instrument_id(dataset, symbol))}

    days = (end - start).days
    futures: dict[str, list[Instrument]] = {}
    options: dict[str, list[Instrument]] = {}
    for instrument in map(parse, symbols):
        if instrument.kind in ("future", "option"):
            (futures if instrument.kind == "future" else options).setdefault(instrument.root, []).append(instrument)
    continuous: dict[str, list[dict[str, str]]] = {}
    for root, contracts in futures.items():
        contracts.sort(key=lambda c: c.expiry)
        bounds = [start + timedelta(days=days * i // len(contracts)) for i in range(len(contracts))] + [end]
        continuous[f"{root}.c.0"] = [interval(bounds[i], bounds[i + 1], c.symbol) for i, c in enumerate(contracts)
                                     if bounds[i] < bounds[i + 1]]
    parents = {f"{root}.{suffix}": [interval(start, end, c.symbol) for c in contracts]
               for suffix, by_root in (("FUT", futures), ("OPT", options)) for root, contracts in by_root.items()}
    return {"raw_symbol": {s: [interval(start, end, s)] for s in symbols}, "parent": parents,
            "continuous": continuous}


def merge_symbology(path: Path, mappings: Symbology) -> None:
    """Add mappings to the symbology.json at `path`: a symbol's new intervals replace the days they span
    and keep its other days, so data generated or imported for other dates stays resolvable."""
    known: Symbology = json.loads(path.read_text()) if path.exists() else {}
    for stype, entries in mappings.items():
        for symbol, intervals in entries.items():
            if not intervals:
                continue
            first, last = min(i["d0"] for i in intervals), max(i["d1"] for i in intervals)
            kept = [piece for old in known.get(stype, {}).get(symbol, [])
                    for piece in ({**old, "d1": min(old["d1"], first)}, {**old, "d0": max(old["d0"], last)})
                    if piece["d0"] < piece["d1"]]
            known.setdefault(stype, {})[symbol] = sorted(kept + intervals, key=lambda i: i["d0"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1))


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


def tape_records(seed: int, schema: str, dataset: str, symbol: str, day: date, trades_per_day: int,
                 version: int = dbn.DBN_VERSION) -> np.ndarray:
    """`schema`'s records derived from the instrument-day's one tape (tools/tape.py): trades, tbbo,
    bars and the statistics' summary agree; definitions are as in day_records."""
    rng = np.random.default_rng([seed, zlib.crc32(f"tape/{dataset}/{symbol}/{day}".encode())])
    iid, instrument, publisher_ids = instrument_id(dataset, symbol), parse(symbol), publishers(dataset, symbol)
    book = trade_like(rng, "tbbo", iid, instrument, day, trades_per_day, publisher_ids)
    if schema == "tbbo":
        return book
    trades = trades_of(book)
    if schema == "trades":
        return trades
    if schema in OHLCV_RTYPES:
        return bars_of(trades, schema)
    if schema == "statistics":
        stats = statistics(rng, iid, instrument, day, version, publisher_ids[0])
        summarize(stats, trades[trades["publisher_id"] == publisher_ids[0]])
        return stats
    return definition(dataset, symbol, day, version, publisher_ids[0])


def generate(out: Path, dataset: str, symbols: list[str], start: date, end: date, schemas: list[str],
             seed: int, trades_per_day: int, version: int = dbn.DBN_VERSION, from_tape: bool = False) -> int:
    """Write every (schema, day) file and the symbology; returns the number of records written.
    `from_tape` derives every schema of an instrument-day from one tape of trades (the demo's data,
    consistent across schemas); otherwise each schema is drawn on its own (varied, and cheap for
    bars over long ranges)."""
    total = 0
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    mappings = symbology(dataset, symbols, start, end)
    for schema in schemas:
        for day in days:
            rng = np.random.default_rng([seed, zlib.crc32(f"{schema}/{day}".encode())])
            parts = [tape_records(seed, schema, dataset, s, day, trades_per_day, version) if from_tape
                     else day_records(rng, schema, dataset, s, day, trades_per_day, version) for s in symbols]
            records = np.concatenate(parts)
            records = records[np.argsort(index_ts(records), kind="stable")]
            day_ns = day_start_ns(day)
            meta = metadata(dataset, schema, day_ns, day_ns + 86400 * NS, symbols, mappings["raw_symbol"],
                            version=version)
            write_dbn(out / dataset / schema / f"{day.isoformat()}.dbn.zst", meta, records)
            total += len(records)
    merge_symbology(out / dataset / "symbology.json", mappings)
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
    parser.add_argument("--independent", action="store_true",
                        help="draw each schema on its own instead of deriving bars, tbbo and statistics from trades")
    args = parser.parse_args()
    schemas = [s for s in args.schemas.split(",") if s]
    unknown = set(schemas) - set(ALL_SCHEMAS)
    if unknown:
        parser.error(f"unknown schemas: {', '.join(sorted(unknown))}")
    n = generate(args.out, args.dataset, args.symbols.split(","), args.start, args.end, schemas, args.seed,
                 args.trades_per_day, args.dbn_version, from_tape=not args.independent)
    print(f"generated {n:,} records in {args.out}")


if __name__ == "__main__":
    main()
