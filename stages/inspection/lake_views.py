"""DuckDB over the lake: ready-made views for `hist lake query` and the quarantine tools.

Views: `manifest` (every event), `raw_files` (the raw inventory), one view per standardized table
(`ohlcv_data`, `trades_data`, ...) and one per quarantine table (`quarantine_ohlcv_data`, ...). Table
views read only each chunk's current files, so a re-extracted or reprocessed chunk is not counted
twice. The same data opens in a plain DuckDB session with read_json/read_parquet (see the README)."""

from __future__ import annotations

import duckdb

from lake.formats import FileRole
from lake.storage import Lake
from stages.transform.rule_engine import quoted, sql_literal, utc_connection


def current_files(lake: Lake, role: FileRole) -> dict[str, list[str]]:
    """table name -> names (paths or s3:// urls) of the current `role` files (latest transform of each chunk)."""
    tables: dict[str, list[str]] = {}
    for event in lake.manifest().latest("transform").values():
        ref = event.file(role)
        if ref is not None:
            table = ref.path.split("/")[1].removeprefix("table=")
            tables.setdefault(table, []).append(lake.uri(ref.path))
    return tables


def lake_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """A DuckDB session over the lake, local or on an object store (whose filesystem is registered
    with DuckDB: its own httpfs extension is not needed)."""
    con = utc_connection()
    lake.attach(con)
    manifest = lake.manifest()
    if manifest.written():
        con.execute(f"CREATE VIEW manifest AS SELECT * FROM {manifest.duckdb_source(con)} WHERE stage IS NOT NULL")
        con.execute(
            "CREATE VIEW raw_files AS SELECT chunk_id, chunk.dataset AS dataset, chunk.source_schema AS schema,"
            " f.path, f.sha256, f.bytes, f.records, created_at FROM (SELECT chunk_id, chunk, created_at,"
            " unnest(files) AS f FROM manifest WHERE stage = 'extract' AND status = 'committed') WHERE f.role = 'raw'"
            " QUALIFY row_number() OVER (PARTITION BY chunk_id ORDER BY created_at DESC) = 1")
    for role, prefix in (("standardized", ""), ("quarantine", "quarantine_")):
        for table, files in current_files(lake, role).items():  # type: ignore[arg-type]
            con.execute(f"CREATE VIEW {quoted(prefix + table)} AS SELECT * FROM read_parquet("
                        f"{sql_literal(sorted(files))}, hive_partitioning=true, union_by_name=true,"
                        " filename=true)")
    return con
