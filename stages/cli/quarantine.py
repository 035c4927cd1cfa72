"""`hist quarantine ...`: what was quarantined, the rows themselves, and reprocessing after a rule or
mapping change (the loader then replaces those chunks' rows)."""

from __future__ import annotations

from typing import Annotated

import typer

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
from stages.inspection.quarantine import QuarantineFilter, affected_chunks, quarantine_rows, quarantine_summary

quarantine_app = typer.Typer(help="Inspect and reprocess quarantined rows.", no_args_is_help=True,
                             rich_markup_mode=HELP_STYLE)
TableOpt = Annotated[str | None, typer.Option("--table", help="e.g. ohlcv_data.")]
RuleOpt = Annotated[str | None, typer.Option("--rule", help="A rule name, e.g. ohlcv_high_ge_low.")]
ChunkOpt = Annotated[str | None, typer.Option("--chunk", help="A chunk id.")]


@quarantine_app.command("ls")
@cli_errors
def quarantine_ls(config: ConfigOpt = DEFAULT_CONFIG, table: TableOpt = None, rule: RuleOpt = None,
                  chunk: ChunkOpt = None, fmt: FormatOpt = "auto", output: OutputOpt = None) -> None:
    """Quarantined rows counted by table, rule and chunk.

    Example: hist quarantine ls --rule ohlcv_high_ge_low
    """
    summary = quarantine_summary(orchestrator(config).lake, QuarantineFilter(table, rule, chunk))
    write_result(summary, output_format(fmt), output, out)


@quarantine_app.command("show")
@cli_errors
def quarantine_show(config: ConfigOpt = DEFAULT_CONFIG, table: TableOpt = None, rule: RuleOpt = None,
                    chunk: ChunkOpt = None, limit: Annotated[int, typer.Option("--limit")] = 20,
                    fmt: FormatOpt = "auto", output: OutputOpt = None, columns: ColumnsOpt = None) -> None:
    """Quarantined rows with their values, the rule that stopped them and every rule they failed.

    Example: hist quarantine show --table trades_data --rule trade_size_positive --limit 5
    """
    rows = quarantine_rows(orchestrator(config).lake, QuarantineFilter(table, rule, chunk), limit)
    write_result(rows, output_format(fmt), output, out, columns=column_list(columns), rows_of_data=True)


@quarantine_app.command("reprocess")
@cli_errors
def quarantine_reprocess(config: ConfigOpt = DEFAULT_CONFIG, table: TableOpt = None, rule: RuleOpt = None,
                         chunk: ChunkOpt = None) -> None:
    """Transform again the chunks with quarantined rows (after changing a rule or mapping), then load
    them: the loader replaces those chunks' rows. Needs HIST_DATABASE_URL.

    Example: hist quarantine reprocess --rule ohlcv_open_close_within_range
    """
    orch = orchestrator(config)
    chunks = affected_chunks(orch.lake, QuarantineFilter(table, rule, chunk))
    if not chunks:
        out.print("no quarantined chunks match")
        return
    transformed = orch.transform(chunks, redo=frozenset(chunks), retry_failed=True)
    loaded = orch.load(chunks)
    out.print(f"reprocessed {len(transformed.transformed)} chunks with rules {orch.transform_settings().rules_version}:"
              f" {transformed.records['standardized']:,} standardized, {transformed.records['quarantined']:,}"
              f" still quarantined; load: {len(loaded.replaced)} chunks replaced, {loaded.rows:,} rows")
    if transformed.failed or loaded.failed:
        raise typer.Exit(1)
