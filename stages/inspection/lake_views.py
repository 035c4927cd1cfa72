"""DuckDB over the lake: ready-made views for `hist lake query` and the quarantine tools.

Views: `manifest` (every event), `raw_files` (the raw inventory), one view per standardized table
(`ohlcv_data`, `trades_data`, ...) and one per quarantine table (`quarantine_ohlcv_data`, ...). Table
views read only each chunk's current files, so a re-extracted or reprocessed chunk is not counted
twice. The same data opens in a plain DuckDB session with read_json/read_parquet (see the README)."""

from __future__ import annotations

import duckdb

from lake.formats import FileRole
from lake.manifest import Manifest
from lake.paths import LakePaths
from stages.transform.rule_engine import quoted, sql_literal, utc_connection


def current_files(paths: LakePaths, role: FileRole) -> dict[str, list[str]]:
    """table name -> absolute paths of the current `role` files (latest transform of each chunk)."""
    tables: dict[str, list[str]] = {}
    for event in Manifest(paths).latest("transform").values():
        ref = event.file(role)
        if ref is not None:
            table = ref.path.split("/")[1].removeprefix("table=")
            tables.setdefault(table, []).append(str(paths.absolute(ref.path)))
    return tables


def lake_connection(paths: LakePaths) -> duckdb.DuckDBPyConnection:
    con = utc_connection()
    if paths.manifest.exists():
        con.execute(
            f"CREATE VIEW manifest AS SELECT * FROM read_json({sql_literal(str(paths.manifest))},"
            " format='newline_delimited', ignore_errors=true) WHERE stage IS NOT NULL")
        con.execute(
            "CREATE VIEW raw_files AS SELECT chunk_id, chunk.dataset AS dataset, chunk.source_schema AS schema,"
            " f.path, f.sha256, f.bytes, f.records, created_at FROM (SELECT chunk_id, chunk, created_at,"
            " unnest(files) AS f FROM manifest WHERE stage = 'extract' AND status = 'committed') WHERE f.role = 'raw'"
            " QUALIFY row_number() OVER (PARTITION BY chunk_id ORDER BY created_at DESC) = 1")
    for role, prefix in (("standardized", ""), ("quarantine", "quarantine_")):
        for table, files in current_files(paths, role).items():  # type: ignore[arg-type]
            con.execute(f"CREATE VIEW {quoted(prefix + table)} AS SELECT * FROM read_parquet("
                        f"{sql_literal(sorted(files))}, hive_partitioning=true, union_by_name=true,"
                        " filename=true)")
    return con
