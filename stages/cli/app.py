"""The `hist` command line: a thin Typer layer over PipelineOrchestrator. Errors raised on purpose
become one line on stderr and a non-zero exit; nothing here holds pipeline logic."""

from __future__ import annotations

import os
import threading
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from lake.errors import ConfigError
from schemas.config import JobConfig, describe_validation_error
from schemas.secrets import Secret, mask_dsn
from stages.cli.common import (
    DEFAULT_CONFIG,
    HELP_STYLE,
    ApiOpt,
    ChunkDaysOpt,
    ColumnsOpt,
    ConfigOpt,
    DatasetOpt,
    DryRunOpt,
    EndOpt,
    ForceOpt,
    FormatOpt,
    JobOpt,
    MaxCostOpt,
    OutputOpt,
    SchedulerOpt,
    SchemaOpt,
    StartOpt,
    StypeOpt,
    SymbolsOpt,
    Verbosity,
    ViaOpt,
    YesOpt,
    cli_errors,
    column_list,
    orchestrator,
    out,
    output_format,
    progress,
    via_option,
)
from stages.cli.lake import lake_app
from stages.cli.logs import configure_logging
from stages.cli.output import write_result
from stages.cli.quarantine import quarantine_app
from stages.extract.runner import CostPolicy, ExtractReport
from stages.inspection.db_query import QueryRequest, run_query
from stages.load.runner import LoadReport
from stages.orchestrator import PipelineOrchestrator, database_url, default_lake
from stages.transform.runner import TransformReport
from stages.watch import Pass, stop_on_signals, watch

app = typer.Typer(help="Historical Databento data into TimescaleDB through a file-based staging lake.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=HELP_STYLE)
stage_app = typer.Typer(help="Run one stage on its own.", no_args_is_help=True, rich_markup_mode=HELP_STYLE)
db_app = typer.Typer(help="Database set-up.", no_args_is_help=True, rich_markup_mode=HELP_STYLE)
app.add_typer(stage_app, name="stage")
app.add_typer(db_app, name="db")
app.add_typer(lake_app, name="lake")
app.add_typer(quarantine_app, name="quarantine")

@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                               help="Log every lifecycle event; show tracebacks.")] = False,
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results.")] = False,
         log_format: Annotated[str, typer.Option("--log-format", help="text, or json (one object per line; "
                                                                      "implies lifecycle events).")] = "text"
         ) -> None:
    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"'{log_format}' is not text or json", param_hint="--log-format")
    configure_logging(verbose, quiet, log_format)  # type: ignore[arg-type]
    out.quiet = quiet
    Verbosity.tracebacks = verbose




def _job(orch: PipelineOrchestrator, job: str | None, api: str, dataset: str | None, schema: str | None,
         symbols: str | None, stype_in: str, start: str | None, end: str | None, chunk_days: int | None) -> JobConfig:
    if api != "databento":
        raise ConfigError(f"unknown --api '{api}' (supported: databento)")
    if job:
        chosen = orch.config.job(job)
    else:
        missing = [n for n, v in (("--dataset", dataset), ("--schema", schema), ("--symbols", symbols),
                                  ("--start-date", start), ("--end-date", end)) if v is None]
        if missing:
            raise ConfigError(f"give --job NAME, or all of {', '.join(missing)}")
        try:
            chosen = JobConfig.model_validate({
                "name": "adhoc", "dataset": dataset, "schema": schema, "symbols": symbols,
                "stype_in": stype_in, "start_date": _date(start, "--start-date"),
                "end_date": _date(end, "--end-date"), "date_chunk_interval_days": chunk_days,
            })
        except ValidationError as exc:
            raise ConfigError(f"command line: {describe_validation_error(exc)}") from exc
    orch.mapping.schema_mapping(chosen.schema_)  # unknown schema: one clear line, before any request
    return chosen


def _date(value: str | None, option: str) -> date:
    try:
        return date.fromisoformat(value or "")
    except ValueError:
        raise ConfigError(f"{option}: '{value}' is not a date (YYYY-MM-DD)") from None


@app.command()
@cli_errors
def ingest(config: ConfigOpt = DEFAULT_CONFIG, job: JobOpt = None, api: ApiOpt = "databento",
           dataset: DatasetOpt = None, schema: SchemaOpt = None, symbols: SymbolsOpt = None,
           stype_in: StypeOpt = "raw_symbol", start_date: StartOpt = None, end_date: EndOpt = None,
           chunk_days: ChunkDaysOpt = None, force: ForceOpt = False, dry_run: DryRunOpt = False,
           max_cost: MaxCostOpt = None, yes: YesOpt = False, via: ViaOpt = "auto",
           scheduler: SchedulerOpt = None) -> None:
    """Extract, transform and load one job. The end date is exclusive.

    Example: hist ingest --dataset GLBX.MDP3 --schema ohlcv-1m --symbols ESH4,NQH4
    --start-date 2024-01-02 --end-date 2024-01-04
    """
    orch = orchestrator(config, scheduler)
    chosen = _job(orch, job, api, dataset, schema, symbols, stype_in, start_date, end_date, chunk_days)
    with progress(not dry_run) as hooks:
        extracted, transformed, loaded = orch.ingest(chosen, force=force, cost=_cost(orch, dry_run, max_cost, yes),
                                                     hooks=hooks, via=via_option(via))
    _print_extract(extracted, dry_run)
    if transformed is None or loaded is None:
        return
    _print_transform(transformed)
    _print_load(loaded)
    if extracted.failed or transformed.failed or loaded.failed:
        raise typer.Exit(1)


@stage_app.command("extract")
@cli_errors
def stage_extract(config: ConfigOpt = DEFAULT_CONFIG, job: JobOpt = None, api: ApiOpt = "databento",
                  dataset: DatasetOpt = None, schema: SchemaOpt = None, symbols: SymbolsOpt = None,
                  stype_in: StypeOpt = "raw_symbol", start_date: StartOpt = None, end_date: EndOpt = None,
                  chunk_days: ChunkDaysOpt = None, force: ForceOpt = False, dry_run: DryRunOpt = False,
                  max_cost: MaxCostOpt = None, yes: YesOpt = False, via: ViaOpt = "auto",
                  scheduler: SchedulerOpt = None) -> None:
    """Download raw DBN chunks into the lake. The end date is exclusive.

    Example: hist stage extract --job es_nq_ohlcv_1m
    """
    orch = orchestrator(config, scheduler)
    chosen = _job(orch, job, api, dataset, schema, symbols, stype_in, start_date, end_date, chunk_days)
    with progress(not dry_run) as hooks:
        report = orch.extract(chosen, force=force, cost=_cost(orch, dry_run, max_cost, yes), on_chunk=hooks.extract,
                              via=via_option(via))
    _print_extract(report, dry_run)
    if report.failed:
        raise typer.Exit(1)


FollowOpt = Annotated[bool, typer.Option("--follow", help="Keep running: process new chunks as they are committed.")]


@stage_app.command("transform")
@cli_errors
def stage_transform(config: ConfigOpt = DEFAULT_CONFIG, follow: FollowOpt = False,
                    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                                               help="Retry chunks that failed before.")] = False,
                    scheduler: SchedulerOpt = None) -> None:
    """Turn every extracted chunk not yet transformed into standardized and quarantine Parquet.

    Example: hist stage transform --follow
    """
    orch = orchestrator(config, scheduler)
    if follow:
        _follow(orch, [lambda stop: _print_transform(orch.transform(should_stop=stop), quiet_if_idle=True)])
        return
    with progress() as hooks:
        report = orch.transform(retry_failed=retry_failed, on_chunk=hooks.transform)
    _print_transform(report)
    if report.failed:
        raise typer.Exit(1)


@stage_app.command("load")
@cli_errors
def stage_load(config: ConfigOpt = DEFAULT_CONFIG, follow: FollowOpt = False,
               db: Annotated[str | None, typer.Option("--db", help="Database URL instead of HIST_DATABASE_URL.",
                                                      show_default=False)] = None) -> None:
    """Load every transformed chunk not yet in TimescaleDB (HIST_DATABASE_URL or --db). Rebuilding a
    database from the lake makes no API call.

    Example: hist stage load --db postgresql://postgres@127.0.0.1:55432/rebuilt
    """
    orch = orchestrator(config)
    dsn = Secret(db) if db else None
    if follow:
        _follow(orch, [lambda stop: _print_load(orch.load(dsn=dsn, should_stop=stop), quiet_if_idle=True)])
        return
    with progress() as hooks:
        report = orch.load(dsn=dsn, on_chunk=hooks.load)
    _print_load(report)
    if report.failed:
        raise typer.Exit(1)


@app.command("doctor")
@cli_errors
def doctor_command(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Check that everything hist needs is in place: the config, the API key (never shown), the
    gateway, the database (timescaledb and migrations), the lake and its manifest. One line per
    check; exit 1 if any failed.

    Example: hist doctor
    """
    from stages.inspection.doctor import run_checks

    checks = list(run_checks(config, default_lake(), os.environ.get("HIST_DATABASE_URL")))
    for check in checks:
        typer.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<9} {check.detail}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command("rederive")
@cli_errors
def rederive_command(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Transform again every chunk that `hist lake status` shows as stale (transformed under an older
    mapping or rules version), from the raw bytes already in the lake: no download. Then load them;
    the loader replaces their rows. Needs HIST_DATABASE_URL.

    Example: hist rederive
    """
    orch = orchestrator(config)
    with progress() as hooks:
        chunks, transformed, loaded = orch.rederive(hooks)
    out.print(f"rederive: {len(chunks)} stale chunks under rules {orch.transform_settings().rules_version}")
    _print_transform(transformed)
    _print_load(loaded)
    if transformed.failed or loaded.failed:
        raise typer.Exit(1)


@app.command("watch")
@cli_errors
def watch_command(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Transform and load chunks as extract commits them, until SIGINT/SIGTERM (the chunk in hand
    finishes first). Resumes from the manifest after a restart.

    Example: hist watch &  hist stage extract --job es_nq_trades
    """
    orch = orchestrator(config)
    _follow(orch, [lambda stop: _print_transform(orch.transform(should_stop=stop), quiet_if_idle=True),
                   lambda stop: _print_load(orch.load(should_stop=stop), quiet_if_idle=True)])


def _follow(orch: PipelineOrchestrator, passes: list[Pass]) -> None:
    stop = threading.Event()
    manifest = orch.lake.manifest()
    out.print(f"watching {manifest.describe()} (Ctrl-C to stop)")
    with stop_on_signals(stop):
        rounds = watch(manifest.local_file(), passes, stop, poll_seconds=10.0 if manifest.local_file() else 2.0)
    out.print(f"stopped after {rounds} rounds")


def usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


def _cost(orch: PipelineOrchestrator, dry_run: bool, max_cost: float | None, yes: bool) -> CostPolicy:
    limit = max_cost if max_cost is not None else orch.config.max_cost_usd
    return CostPolicy(max_cost_usd=limit, accept=yes, dry_run=dry_run)


def _print_extract(r: ExtractReport, dry_run: bool = False) -> None:
    e = r.estimate
    if dry_run:
        out.print(f"plan: {r.planned} chunks, {len(r.skipped)} already in the lake, {len(r.reused)} reusing bytes "
                  f"already bought, {len(r.paid)} from batch jobs already paid for, {e.chunks} to download: "
                  f"{e.records:,} records, {e.bytes:,} bytes, "
                  f"{usd(e.usd)} (dry run: nothing downloaded)")
        return
    out.print(f"cost: {e.chunks} chunks to download, {e.records:,} records, {e.bytes:,} bytes, {usd(e.usd)}")
    reused = f", {len(r.reused)} reusing bytes already bought" if r.reused else ""
    paid = f", {len(r.paid)} from batch jobs already paid for" if r.paid else ""
    busy = f", {len(r.busy)} left to the process that holds them" if r.busy else ""
    out.print(f"extract: {len(r.extracted)} chunks ({r.records:,} records, {r.bytes:,} bytes), "
              f"{len(r.skipped)} already in the lake{reused}{paid}{busy}, {len(r.failed)} failed")
    for chunk_id, reason in r.failed.items():
        typer.echo(f"error: chunk {chunk_id}: {reason}", err=True)


def _print_transform(r: TransformReport, quiet_if_idle: bool = False) -> None:
    if quiet_if_idle and not (r.transformed or r.failed):
        return
    by_filter = ", ".join(f"{k.removeprefix('filtered:')} {n:,}" for k, n in r.records.items()
                          if k.startswith("filtered:"))
    out.print(f"transform: {len(r.transformed)} chunks ({r.records['in']:,} records in, "
              f"{r.records['standardized']:,} standardized, {r.records['quarantined']:,} quarantined, "
              f"{r.records['filtered']:,} filtered{f' ({by_filter})' if by_filter else ''}, "
              f"{r.records['duplicates']:,} duplicates), {len(r.skipped)} skipped, {len(r.failed)} failed")
    for chunk_id, reason in r.failed.items():
        typer.echo(f"error: chunk {chunk_id}: {reason}", err=True)


def _print_load(r: LoadReport, quiet_if_idle: bool = False) -> None:
    if quiet_if_idle and not (r.loaded or r.replaced or r.failed):
        return
    out.print(f"load: {len(r.loaded)} chunks loaded, {len(r.replaced)} replaced, "
              f"{len(r.skipped)} skipped, {r.rows:,} rows")
    for chunk_id, reason in r.failed.items():
        typer.echo(f"error: chunk {chunk_id}: {reason}", err=True)


@db_app.command("init")
@cli_errors
def db_init() -> None:
    """Create the TimescaleDB extension, the hypertables and the load ledger (idempotent).

    Example: HIST_DATABASE_URL=postgresql://postgres@127.0.0.1:55432/hist hist db init
    """
    from stages.load.database import connect
    from stages.load.migrations import migrate

    url = database_url()
    with connect(url) as conn:
        applied = migrate(conn)
    out.print(f"database {mask_dsn(url.reveal())}: "
              + (f"applied {', '.join(applied)}" if applied else "up to date"))


@app.command("query")
@cli_errors
def query_command(schema: Annotated[str, typer.Option("--schema", help="e.g. ohlcv-1m, trades.")],
                  symbols: Annotated[str, typer.Option("--symbols", help="Comma-separated symbols or raw symbols.")],
                  start_date: StartOpt = None, end_date: EndOpt = None, config: ConfigOpt = DEFAULT_CONFIG,
                  interval: Annotated[str | None, typer.Option("--interval", help="Resample into bars: 30s, 5m, "
                                                                                  "1h, 1d (time_bucket).")] = None,
                  limit: Annotated[int | None, typer.Option("--limit")] = None,
                  fmt: FormatOpt = "auto", output: OutputOpt = None, columns: ColumnsOpt = None,
                  chart: Annotated[Path | None, typer.Option("--chart", help="Draw candlesticks with volume "
                                                             "underneath into this PNG instead.")] = None) -> None:
    """Rows of one schema from TimescaleDB, optionally resampled. The end date is exclusive.

    Example: hist query --schema ohlcv-1m --symbols ESH4 --start-date 2024-01-02 --end-date 2024-01-03 --interval 1h
    """
    from stages.load.database import connect

    orch = orchestrator(config)
    request = QueryRequest(schema, [s.strip() for s in symbols.split(",") if s.strip()],
                           _date(start_date, "--start-date"), _date(end_date, "--end-date"), interval, limit)
    with connect(database_url(), attempts=2) as conn:
        result = run_query(conn, orch.mapping, request)
    if chart is None:
        write_result(result, output_format(fmt), output, out, columns=column_list(columns), rows_of_data=True)
        return
    from stages.inspection.chart import draw_candles

    title = f"{symbols} {request.interval or orch.mapping.schema_mapping(schema).interval or schema}"
    drawn = draw_candles(result, chart, f"{title} ({start_date} to {end_date}, UTC)")
    out.print(f"chart: {drawn:,} bars of {symbols} drawn to {chart}")
