"""Record contracts for library users: one validated Pydantic model per Databento record kind.

The bulk pipeline never builds these (it validates in DuckDB SQL compiled from the YAML rules); they
exist for code that wants typed records one at a time (`DatabentoAdapter.iter_records`). Their
validators state the same record-level rules as `configs/validation/databento_rules.yaml`, and a
property test proves both accept and reject the same records. Prices are exact Decimals (the DBN
fixed-point integer times 1e-9); undefined sentinels become None; times are int nanoseconds (UTC).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from databento_dbn import UNDEF_PRICE, UNDEF_STAT_QUANTITY, UNDEF_TIMESTAMP
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _price(value: object) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return None if value == UNDEF_PRICE else Decimal(value).scaleb(-9)
    raise ValueError(f"a price is a fixed-point integer, got {value!r}")


def _nanos(value: object) -> int | None:
    return None if value == UNDEF_TIMESTAMP else value  # type: ignore[return-value]


def _quantity(value: object) -> int | None:
    return None if value == UNDEF_STAT_QUANTITY else value  # type: ignore[return-value]


def _code(value: object) -> str | None:
    """A one-character code or a text field; databento_dbn enums (Side, Action, ...) carry it in .value."""
    if not isinstance(value, str | bytes | None) and hasattr(value, "value"):
        value = value.value
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.rstrip("\0") or None


Price = Annotated[Decimal | None, BeforeValidator(_price)]
Nanos = Annotated[int | None, BeforeValidator(_nanos)]
Quantity = Annotated[int | None, BeforeValidator(_quantity)]
Code = Annotated[str | None, BeforeValidator(_code)]


class DatabentoRecord(BaseModel):
    """Header fields every record has."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    publisher_id: int
    instrument_id: int
    ts_event: Nanos

    @classmethod
    def from_dbn(cls, record: object) -> DatabentoRecord:
        """Validate one record object of `databento_dbn` (as DBNStore iteration yields it)."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:  # bid_px_00 lives on record.levels[0].bid_px
            holder, attr = (record.levels[0], name[:-3]) if name.endswith("_00") else (record, name)  # type: ignore[attr-defined]
            values[name] = getattr(holder, attr)
        return cls.model_validate(values)


class OhlcvRecord(DatabentoRecord):
    open: Price
    high: Price
    low: Price
    close: Price
    volume: int = Field(ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _bar_is_consistent(self) -> OhlcvRecord:
        bar = (self.open, self.high, self.low, self.close)
        if any(p is None for p in bar):  # a negative price is legal (spreads, some futures): a warning only
            raise ValueError("a bar needs all four prices")
        if self.high < self.low:  # type: ignore[operator]
            raise ValueError("high is below low")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):  # type: ignore[operator]
            raise ValueError("open and close must lie inside [low, high]")
        return self


class TradeRecord(DatabentoRecord):
    ts_recv: Nanos
    price: Price
    size: int
    action: Code
    side: Code
    flags: int
    depth: int
    ts_in_delta: int
    sequence: int

    @model_validator(mode="after")
    def _trade_is_valid(self) -> TradeRecord:
        if self.price is None:  # zero and negative prices are legal for spreads: a warning only
            raise ValueError("a trade needs a price")
        if self.size <= 0:
            raise ValueError("trade size must be positive")
        if self.side not in ("A", "B", "N"):
            raise ValueError(f"side must be A, B or N, got {self.side!r}")
        if self.ts_event is None:
            raise ValueError("ts_event is undefined")
        return self


class TbboRecord(TradeRecord):
    """A trade with the book before it; a crossed book is legal (auctions, consolidated feeds)."""

    bid_px_00: Price
    ask_px_00: Price
    bid_sz_00: int
    ask_sz_00: int
    bid_ct_00: int
    ask_ct_00: int


class StatisticsRecord(DatabentoRecord):
    ts_recv: Nanos
    ts_ref: Nanos
    price: Price
    quantity: Quantity
    sequence: int
    ts_in_delta: int
    stat_type: int
    channel_id: int
    update_action: Literal[1, 2]
    stat_flags: int

    @model_validator(mode="after")
    def _value_present(self) -> StatisticsRecord:
        if self.ts_event is None:
            raise ValueError("ts_event is undefined")
        if self.update_action == 1 and self.price is None and self.quantity is None:
            raise ValueError(f"a new statistic of type {self.stat_type} carries neither a price nor a quantity")
        return self


class DatabentoDefinitionRecord(DatabentoRecord):
    ts_recv: Nanos
    raw_symbol: Code
    instrument_class: Code
    security_update_action: Code
    min_price_increment: Price
    display_factor: Price
    high_limit_price: Price
    low_limit_price: Price
    strike_price: Price
    expiration: Nanos
    activation: Nanos
    contract_multiplier: int
    underlying: Code
    asset: Code
    exchange: Code
    currency: Code
    security_type: Code
    cfi: Code
    group: Code
    unit_of_measure: Code
    unit_of_measure_qty: Price
    match_algorithm: Code
    leg_count: int
    leg_index: int

    @model_validator(mode="after")
    def _required(self) -> DatabentoDefinitionRecord:
        """Only what every venue fills: equities leave the tick size unset, some options the
        expiration, ICE futures the display factor (warnings in the SQL rules, not errors)."""
        if not self.raw_symbol or not self.instrument_class or self.security_update_action not in ("A", "M", "D"):
            raise ValueError("raw_symbol, instrument_class and security_update_action are required")
        return self


def model_for_schema(source_schema: str) -> type[DatabentoRecord]:
    """The record model of a Databento schema (ohlcv-1m, trades, tbbo, statistics, definition)."""
    if source_schema.startswith("ohlcv-"):
        return OhlcvRecord
    models: dict[str, type[DatabentoRecord]] = {"trades": TradeRecord, "tbbo": TbboRecord,
                                                "statistics": StatisticsRecord, "definition": DatabentoDefinitionRecord}
    try:
        return models[source_schema]
    except KeyError:
        raise ValueError(f"no record model for schema '{source_schema}'") from None
