"""What every `hist` command shares: the console, option types, the error boundary and the
orchestrator built from the config."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from lake.errors import HistError
from schemas.config import load_config
from schemas.secrets import mask_dsn
from stages.cli.output import OutputFormat
from stages.extract.batch import Via
from stages.orchestrator import PipelineOrchestrator, ProgressHooks

out = Console(soft_wrap=True)
HELP_STYLE = None  # plain help: typer's rich help shows `<bool>` after flags, as if they took a value
DEFAULT_CONFIG = Path("configs/api_specific/databento_config.yaml")
P = ParamSpec("P")
R = TypeVar("R")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="HIST_CONFIG", help="Config file.")]
JobOpt = Annotated[str | None, typer.Option("--job", help="A job name from the config.")]
ApiOpt = Annotated[str, typer.Option("--api", help="The vendor API (only 'databento').")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", help="Dataset code, e.g. GLBX.MDP3.")]
SchemaOpt = Annotated[str | None, typer.Option("--schema", help="Schema, e.g. ohlcv-1m.")]
SymbolsOpt = Annotated[str | None, typer.Option("--symbols", help="Comma-separated symbols.")]
StypeOpt = Annotated[str, typer.Option("--stype-in", "--stype_in", help="Input symbology type.")]
StartOpt = Annotated[str | None, typer.Option("--start-date", "--start_date",
                                              help="First UTC day, inclusive (YYYY-MM-DD).")]
EndOpt = Annotated[str | None, typer.Option("--end-date", "--end_date",
                                            help="Last UTC day, EXCLUSIVE (YYYY-MM-DD), as in Databento's API.")]
ChunkDaysOpt = Annotated[int | None, typer.Option(
    "--chunk-days", help="Days per request (default: sized to the schema: a year of daily bars, a month of hourly, "
                         "a week of minute bars, a day of ticks).", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Re-extract chunks already in the lake.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and its cost; download nothing.")]
MaxCostOpt = Annotated[float | None, typer.Option("--max-cost", help="Stop before downloading above this USD cost.")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Accept a cost above the limit.")]
ViaOpt = Annotated[str, typer.Option("--via", help="stream (timeseries.get_range), batch (a batch job), or auto: "
                                                   "batch above the config's batch_above_bytes (5 GB).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", envvar="HIST_SCHEDULER", show_default=False,
    help="A Dask scheduler (tcp://host:8786): extract and transform each chunk as a task on its cluster; "
         "load stays here. The workers need the lake on S3 (HIST_LAKE=s3://...) and the cluster extra.")]


class Verbosity:
    """Whether the user asked for tracebacks (`hist -v`)."""

    tracebacks = False


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The error boundary: hist's own errors become one line on stderr and exit 1; anything
    unexpected becomes one line naming its type (the traceback only with -v), also exit 1; Ctrl-C
    says what was kept and exits 130. A traceback is never printed unasked."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except HistError as exc:
            typer.echo(f"error: {mask_dsn(str(exc))}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: committed chunks are kept; rerun the command to resume", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):  # usage errors: typer says them, exit 2
            raise
        except Exception as exc:
            if Verbosity.tracebacks:
                traceback.print_exc()
            detail = mask_dsn(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
            typer.echo(f"error: {type(exc).__name__}: {detail} (hist -v shows the traceback)", err=True)
            raise typer.Exit(1) from None

    return wrapper



FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, csv, json or parquet; by default a table "
                                                               "on a terminal, CSV with a header in a pipe.")]
ColumnsOpt = Annotated[str | None, typer.Option("--columns", help="Comma-separated columns to show, in order.",
                                                show_default=False)]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (needed for parquet).")]


def output_format(value: str) -> OutputFormat:
    """The chosen format; `auto` is a table for a person at a terminal and plain CSV, which `head`,
    `cut` and spreadsheets read, anywhere else."""
    if value == "auto":
        return "table" if out.is_terminal else "csv"
    if value not in ("table", "csv", "json", "parquet"):
        raise typer.BadParameter(f"'{value}' is not one of table, csv, json, parquet", param_hint="--format")
    return value  # type: ignore[return-value]


def column_list(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def via_option(value: str) -> Via:
    if value not in ("auto", "stream", "batch"):
        raise typer.BadParameter(f"'{value}' is not one of auto, stream, batch", param_hint="--via")
    return value  # type: ignore[return-value]


def orchestrator(config: Path, scheduler: str | None = None) -> PipelineOrchestrator:
    return PipelineOrchestrator.from_config(load_config(config), scheduler=scheduler)


@contextmanager
def progress(enabled: bool = True) -> Iterator[ProgressHooks]:
    """Rich progress bars on stderr for each stage (chunks, bytes or records, rate), shown only when a
    person watches (stdout and stderr both a terminal) and without --quiet: `hist ... | head` stays
    clean."""
    console = Console(stderr=True)
    if not enabled or out.quiet or not (console.is_terminal and out.is_terminal):
        yield ProgressHooks()
        return
    columns = (TextColumn("{task.description:<9}"), BarColumn(), TextColumn("{task.fields[chunks]} chunks"),
               TextColumn("{task.completed:>12,.0f} {task.fields[unit]}"), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bars:
        tasks: dict[str, TaskID] = {}
        lock = threading.Lock()

        def tick(stage: str, unit: str, amount: int) -> None:
            with lock:
                if stage not in tasks:
                    tasks[stage] = bars.add_task(stage, total=None, chunks=0, unit=unit, rate="")
                task = bars.tasks[tasks[stage]]
                bars.update(tasks[stage], advance=amount, chunks=task.fields["chunks"] + 1,
                            rate=f"{task.speed:,.0f} {unit}/s" if task.speed else "")

        yield ProgressHooks(
            extract=lambda e: tick("extract", "bytes", sum(f.bytes for f in e.files if f.role == "raw")),
            transform=lambda e: tick("transform", "records", e.records.get("in", 0)),
            load=lambda r: tick("load", "rows", r.rows),
        )
