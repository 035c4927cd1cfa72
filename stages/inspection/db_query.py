"""`hist query`: rows of one schema from TimescaleDB for users who do not want to write SQL, with
optional resampling into bars by time_bucket."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import psycopg
import pyarrow as pa
from psycopg import sql

from lake.errors import ConfigError
from schemas.mappings import MappingConfig

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
BAR_SOURCES = {"ohlcv": ("open", "high", "low", "close", "volume"),
               "trade": ("price", "price", "price", "price", "size"),
               "tbbo": ("price", "price", "price", "price", "size")}


@dataclass(frozen=True)
class QueryRequest:
    schema: str
    symbols: list[str]
    start: date
    end: date  # exclusive
    interval: str | None = None
    limit: int | None = None


def postgres_interval(text: str) -> str:
    """'5m' -> '5 minutes'; anything else is refused before it reaches SQL."""
    match = re.fullmatch(r"(\d+) ?([smhd])", text.strip())
    if not match:
        raise ConfigError(f"--interval '{text}' is not a bar size such as 30s, 5m, 1h or 1d")
    return f"{match[1]} {UNITS[match[2]]}"


def utc_midnight(day: date) -> datetime:
    """A date as the instant its UTC day starts (a bare date would be read in the session's zone)."""
    return datetime.combine(day, time(), UTC)


def build_query(mapping: MappingConfig, request: QueryRequest) -> tuple[sql.Composed, list[object]]:
    schema_mapping = mapping.schema_mapping(request.schema)
    kind = mapping.record_kinds[schema_mapping.record]
    table, time = sql.Identifier(kind.table), sql.Identifier(kind.time_column)
    where = sql.SQL("(symbol = ANY(%s) OR raw_symbol = ANY(%s)) AND {t} >= %s AND {t} < %s").format(t=time)
    params: list[object] = [request.symbols, request.symbols, utc_midnight(request.start), utc_midnight(request.end)]
    if "interval" in kind.columns:
        where = sql.SQL("{} AND interval = %s").format(where)
        params.append(schema_mapping.interval)
    if request.interval is None:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in kind.columns)
        query = sql.SQL("SELECT {c} FROM {tb} WHERE {w} ORDER BY {t}, instrument_id").format(
            c=columns, tb=table, w=where, t=time)
    else:
        if schema_mapping.record not in BAR_SOURCES:
            raise ConfigError(f"--interval resamples bars, trades and tbbo, not {request.schema}")
        o, h, lo, c, v = (sql.Identifier(n) for n in BAR_SOURCES[schema_mapping.record])
        query = sql.SQL(
            "SELECT time_bucket(%s::interval, {t}) AS ts_event, symbol, first({o}, {t}) AS open, max({h}) AS high,"
            " min({lo}) AS low, last({c}, {t}) AS close, sum({v})::bigint AS volume FROM {tb} WHERE {w}"
            " GROUP BY 1, 2 ORDER BY 1, 2").format(t=time, o=o, h=h, lo=lo, c=c, v=v, tb=table, w=where)
        params.insert(0, postgres_interval(request.interval))
    if request.limit:
        query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(int(request.limit)))
    return query, params


def run_query(conn: psycopg.Connection, mapping: MappingConfig, request: QueryRequest) -> pa.Table:
    query, params = build_query(mapping, request)
    with conn.cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description or []]
        rows = cur.fetchall()
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)}) if names else pa.table({})
