"""`hist lake ...`: look into the lake: status per stage, integrity, and DuckDB SQL over ready-made views."""

from __future__ import annotations

import os
from typing import Annotated

import duckdb
import typer

from lake.errors import ConfigError
from lake.verify import verify_lake
from stages.cli.common import (
    DEFAULT_CONFIG,
    HELP_STYLE,
    ColumnsOpt,
    ConfigOpt,
    FormatOpt,
    OutputOpt,
    cli_errors,
    column_list,
    orchestrator,
    out,
    output_format,
)
from stages.cli.output import write_result
from stages.inspection.lake_status import lake_status
from stages.inspection.lake_views import lake_connection

lake_app = typer.Typer(help="Inspect the lake.", no_args_is_help=True, rich_markup_mode=HELP_STYLE)


@lake_app.command("status")
@cli_errors
def lake_status_command(config: ConfigOpt = DEFAULT_CONFIG, fmt: FormatOpt = "auto", output: OutputOpt = None
                        ) -> None:
    """Chunks, records, bytes and failures per stage, from the manifest; for transform, where every
    record went (standardized, quarantined, filtered, duplicates) and the chunks made stale by a
    mapping or rules change (`hist rederive` redoes them).

    Example: HIST_LAKE=./lake_data hist lake status
    """
    orch = orchestrator(config)
    status = lake_status(orch.lake, os.environ.get("HIST_DATABASE_URL"), orch.transform_settings().rules_version)
    write_result(status, output_format(fmt), output, out)


@lake_app.command("verify")
@cli_errors
def lake_verify(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Re-hash every committed file against the manifest; exit 1 if any is missing or changed.

    Example: HIST_LAKE=./lake_data hist lake verify
    """
    lake = orchestrator(config).lake
    checked, problems = verify_lake(lake)
    for problem in problems:
        typer.echo(f"{problem.problem}: {problem.path} (chunk {problem.chunk_id})", err=True)
    out.print(f"verified {checked} files in {lake.url}: {len(problems)} missing or changed")
    if problems:
        raise typer.Exit(1)


@lake_app.command("query")
@cli_errors
def lake_query(query: Annotated[str, typer.Argument(help="DuckDB SQL over the lake's views.")],
               config: ConfigOpt = DEFAULT_CONFIG, fmt: FormatOpt = "auto", output: OutputOpt = None,
               columns: ColumnsOpt = None) -> None:
    """DuckDB SQL over the lake. Views: manifest, raw_files, each standardized table (ohlcv_data,
    trades_data, ...) and each quarantine table (quarantine_ohlcv_data, ...).

    Example: hist lake query "SELECT symbol, count(*) FROM trades_data GROUP BY 1" --format csv
    """
    con = lake_connection(orchestrator(config).lake)
    try:
        result = con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise ConfigError(f"query failed: {str(exc).splitlines()[0]}") from None
    write_result(result, output_format(fmt), output, out, columns=column_list(columns), rows_of_data=True)
