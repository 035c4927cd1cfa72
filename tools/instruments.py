"""What a symbol names, decided from its shape alone, so that the generator's callers pass plain symbols:

    ESH4, NQM4, BRNH4, 6EH4  future    root, month code, year digit(s): class F, trades round the clock
                                       but for the daily halt (21:00-22:00 UTC)
    ESH4-ESM4                spread    two futures joined by one '-': class S, prices around zero (may be <= 0)
    NVDA, AAPL, BRK.B        equity    no digit: class K, trades 09:00-24:00 UTC (04:00-19:00 New York)
    ESH4 C4800, NVDA P500    option    underlying, a space, C or P and the strike: class C or P, traded
                                       on two publishers (1 and 2) at once, as OPRA reports each venue

Any other symbol with a digit is taken for a future whose root is all but its last two characters.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Literal

from databento import Publisher

from tools.records import PRICE

TICK = PRICE // 4  # 0.25, the futures tick
HALT = (21 * 3600, 22 * 3600)  # the daily futures halt, in seconds of the UTC day: no trades, no bars
MONTHS = "FGHJKMNQUVXZ"
FUTURE = re.compile(rf"(?P<root>.+?)(?P<month>[{MONTHS}])(?P<year>\d{{1,2}})")
OPTION = re.compile(r"(?P<underlying>\S+) (?P<right>[CP])(?P<strike>\d+(?:\.\d+)?)")
Session = tuple[tuple[int, int], ...]  # [open, close) seconds of the UTC day
SESSIONS: dict[str, Session] = {"future": ((0, HALT[0]), (HALT[1], 86400)), "equity": ((9 * 3600, 86400),)}
OPTION_PUBLISHERS = (1, 2)
Kind = Literal["future", "spread", "equity", "option"]


@dataclass(frozen=True)
class Instrument:
    symbol: str
    kind: Kind
    root: str  # the product: ES for ESH4, ESH4-ESM4 and "ESH4 C4800"; NVDA for NVDA
    legs: tuple[str, ...] = ()  # a spread's two futures (front first), or an option's underlying
    right: str = ""  # C or P
    strike: int = 0  # fixed-point, options only
    expiry: tuple[int, int] = (0, 0)  # (year digits, month) of a future, to order contracts

    @property
    def instrument_class(self) -> str:
        return self.right or {"future": "F", "spread": "S", "equity": "K"}[self.kind]

    @property
    def tick(self) -> int:
        return {"future": TICK, "equity": PRICE // 100}.get(self.kind, PRICE // 20)

    @property
    def floor(self) -> int | None:
        """The lowest price a trade or bar may have: none for spreads, whose prices cross zero."""
        return {"future": 10 * PRICE, "spread": None}.get(self.kind, self.tick)

    @property
    def underlying(self) -> Instrument | None:
        return parse(self.legs[0]) if self.kind == "option" else None

    @property
    def session(self) -> Session:
        if underlying := self.underlying:
            return underlying.session
        return SESSIONS.get(self.kind, SESSIONS["future"])


@cache
def parse(symbol: str) -> Instrument:
    if option := OPTION.fullmatch(symbol):
        underlying = option["underlying"]
        return Instrument(symbol, "option", parse(underlying).root, (underlying,), option["right"],
                          round(float(option["strike"]) * PRICE))
    if symbol.count("-") == 1:
        legs = tuple(symbol.split("-"))
        return Instrument(symbol, "spread", parse(legs[0]).root, legs)
    if not any(c.isdigit() for c in symbol):
        return Instrument(symbol, "equity", symbol)
    if future := FUTURE.fullmatch(symbol):
        return Instrument(symbol, "future", future["root"],
                          expiry=(int(future["year"]), MONTHS.index(future["month"]) + 1))
    return Instrument(symbol, "future", symbol[:-2])


def instrument_id(dataset: str, symbol: str) -> int:
    """A stable instrument id per (dataset, symbol), as a vendor would assign."""
    return 1000 + zlib.crc32(f"{dataset}/{symbol}".encode()) % 900_000


def base_price(symbol: str) -> int:
    """Where a symbol's prices start: a futures or stock level, an option's intrinsic value plus time
    value, or a spread's few ticks either side of zero."""
    instrument, h = parse(symbol), zlib.crc32(symbol.encode())
    match instrument.kind:
        case "future":
            return (1000 + h % 9000) * PRICE
        case "equity":
            return (5 + h % 995) * PRICE
        case "spread":
            return (h % 81 - 40) * instrument.tick
    intrinsic = base_price(instrument.legs[0]) - instrument.strike
    return max(intrinsic if instrument.right == "C" else -intrinsic, 0) + (5 + h % 50) * PRICE


@cache
def dataset_publisher(dataset: str) -> int:
    """The publisher id Databento gives the dataset's own venue (GLBX.MDP3 1, XNAS.ITCH 2, IFEU.IMPACT 57)."""
    ids = [p.to_int() for p in Publisher if p.dataset == dataset and p.venue != "XOFF"]
    return min(ids, default=1)


def publishers(dataset: str, symbol: str) -> tuple[int, ...]:
    """Who reports the symbol's trades and bars: options come from two venues at overlapping times."""
    return OPTION_PUBLISHERS if parse(symbol).kind == "option" else (dataset_publisher(dataset),)
