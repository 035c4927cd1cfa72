"""Quarantine tools: what was quarantined (by table, rule, chunk), the rows themselves, and which
chunks to transform again after a rule or mapping change."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from lake.errors import ConfigError
from lake.storage import Lake
from stages.inspection.lake_views import current_files, lake_connection
from stages.transform.rule_engine import quoted, sql_literal


@dataclass(frozen=True)
class QuarantineFilter:
    table: str | None = None
    rule: str | None = None
    chunk: str | None = None

    def where(self) -> str:
        conditions = ["TRUE"]
        if self.rule:
            conditions.append(f"list_contains(failed_rules, {sql_literal(self.rule)})")
        if self.chunk:
            conditions.append(f"filename LIKE {sql_literal('%/' + self.chunk + '.%')}")
        return " AND ".join(conditions)


def _tables(lake: Lake, only: str | None) -> list[str]:
    return sorted(t for t in current_files(lake, "quarantine") if only is None or t == only)


def _chunk_id_sql() -> str:
    return "regexp_extract(filename, '([^/]+)\\.[0-9a-f]{8}\\.parquet$', 1)"


def quarantine_summary(lake: Lake, filters: QuarantineFilter) -> pa.Table:
    """Quarantined rows counted by table, rule and chunk."""
    con = lake_connection(lake)
    parts = [f"SELECT {sql_literal(t)} AS table_name, rule, {_chunk_id_sql()} AS chunk_id, count(*) AS rows"
             f" FROM {quoted('quarantine_' + t)} WHERE {filters.where()} GROUP BY ALL"
             for t in _tables(lake, filters.table)]
    return _run(con, " UNION ALL ".join(parts) + " ORDER BY table_name, rule, chunk_id" if parts else "")


def quarantine_rows(lake: Lake, filters: QuarantineFilter, limit: int) -> pa.Table:
    tables = _tables(lake, filters.table)
    if not tables:
        return pa.table({})
    if len(tables) > 1:
        raise ConfigError(f"quarantined rows are in several tables ({', '.join(tables)}): choose one with --table")
    con = lake_connection(lake)
    table = tables[0]
    return _run(con, f"SELECT {_chunk_id_sql()} AS chunk_id, * EXCLUDE (filename) FROM"
                     f" {quoted('quarantine_' + table)} WHERE {filters.where()} ORDER BY rec_seq LIMIT {int(limit)}")


def affected_chunks(lake: Lake, filters: QuarantineFilter) -> set[str]:
    summary = quarantine_summary(lake, filters)
    return set(summary.column("chunk_id").to_pylist()) if summary.num_rows else set()


def _run(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    if not query:
        return pa.table({"table_name": pa.array([], pa.string()), "rule": pa.array([], pa.string()),
                         "chunk_id": pa.array([], pa.string()), "rows": pa.array([], pa.int64())})
    return con.sql(query).to_arrow_table()
