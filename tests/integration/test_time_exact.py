"""Every timestamptz equals its exact `_ns` twin, in every table, whatever the host's time zone."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tests.conftest import DATASET, HistRunner
from tests.integration.test_schemas_exact import MAPPINGS

TABLE_SCHEMAS = ["ohlcv-1m", "ohlcv-5m", "trades", "tbbo", "statistics", "definition"]


def timestamp_twins() -> dict[str, list[tuple[str, str]]]:
    """table -> [(timestamptz column, its nanosecond twin)] from the mapping."""
    twins: dict[str, list[tuple[str, str]]] = {}
    for kind in MAPPINGS.record_kinds.values():
        for name, column in kind.columns.items():
            if column.as_ == "timestamp":
                twins.setdefault(kind.table, []).append((name, f"{name}_ns"))
    return twins


def test_mapping_given_any_timestamp_column_has_an_exact_nanosecond_twin() -> None:
    for kind in MAPPINGS.record_kinds.values():
        for name, column in kind.columns.items():
            if column.as_ == "timestamp":
                twin = kind.columns.get(f"{name}_ns")
                assert twin is not None and twin.as_ == "nanos" and twin.source == column.source, f"{kind.table}.{name}"


@pytest.mark.parametrize("host_tz", ["Asia/Tokyo", "America/New_York"])
def test_ingest_given_non_utc_host_stores_every_timestamp_equal_to_its_nanoseconds(
        host_tz: str, hist: HistRunner, database_url: str) -> None:
    hist.env["TZ"] = host_tz
    for schema in TABLE_SCHEMAS:
        hist("ingest", "--dataset", DATASET, "--schema", schema, "--symbols", "ESH4,NQH4",
             "--start-date", "2024-01-02", "--end-date", "2024-01-04")

    with psycopg.connect(database_url) as conn:
        conn.execute(f"SET TimeZone = '{host_tz}'")  # a reader's session zone changes nothing either
        for table, twins in timestamp_twins().items():
            total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            assert total and total[0] > 0, table
            for ts, ns in twins:
                wrong = conn.execute(sql.SQL(
                    "SELECT count(*) FROM {t} WHERE ({ts} IS NULL) <> ({ns} IS NULL)"
                    " OR (extract(epoch FROM {ts}) * 1000000)::bigint <> {ns} / 1000").format(
                        t=sql.Identifier(table), ts=sql.Identifier(ts), ns=sql.Identifier(ns))).fetchone()
                assert wrong == (0,), f"{table}.{ts} differs from {ns} under TZ={host_tz}"
