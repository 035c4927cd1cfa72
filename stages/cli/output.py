"""Writing a result table as a terminal table, CSV, JSON lines or Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from lake.errors import ConfigError

OutputFormat = Literal["table", "csv", "json", "parquet"]


def flat(result: pa.Table) -> pa.Table:
    """Nested columns (lists, structs, maps) as JSON text, which CSV and a terminal table can show."""
    for i, column in enumerate(result.columns):
        if pa.types.is_nested(column.type):
            text = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
            result = result.set_column(i, result.field(i).name, pa.array(text, pa.string()))
    return result


# What a person reads first in a table of market data: time, symbol, then prices and sizes.
FIRST = ("chunk_id", "ts_event", "ts_recv", "symbol", "interval", "stat_type", "open", "high", "low", "close",
         "volume", "price", "size", "quantity", "side", "bid_px", "ask_px", "bid_sz", "ask_sz", "rule", "detail",
         "raw_symbol", "instrument_class", "expiration", "strike_price")
TERMINAL_COLUMNS = 10


def choose_columns(result: pa.Table, columns: list[str] | None, focus: bool) -> tuple[pa.Table, int]:
    """The columns asked for (`--columns`), or, with `focus` (rows of data in a table on a terminal),
    the ten that matter most (FIRST, then the others in order); returns the table and how many
    columns were left out."""
    if columns:
        unknown = [c for c in columns if c not in result.column_names]
        if unknown:
            raise ConfigError(f"--columns: no column {', '.join(unknown)} (columns: {', '.join(result.column_names)})")
        return result.select(columns), 0
    if not focus:
        return result, 0
    ordered = [c for c in FIRST if c in result.column_names]
    ordered += [c for c in result.column_names if c not in ordered]
    return result.select(ordered[:TERMINAL_COLUMNS]), max(0, len(ordered) - TERMINAL_COLUMNS)


def write_result(result: pa.Table, fmt: OutputFormat, output: Path | None, console: Console,
                 max_rows: int = 200, columns: list[str] | None = None, rows_of_data: bool = False) -> None:
    """Write `result`; `rows_of_data` (records, not a summary) lets a terminal table show the columns
    that matter first."""
    focus = rows_of_data and fmt == "table" and console.is_terminal and output is None
    result, hidden = choose_columns(result, columns, focus)
    if fmt in ("csv", "table"):
        result = flat(result)
    if fmt == "parquet":
        if output is None:
            raise ConfigError("--format parquet needs --output FILE")
        pq.write_table(result, output)
        console.print(f"wrote {result.num_rows:,} rows to {output}")
    elif fmt == "csv":
        target = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        pa_csv.write_csv(result, target)
        target.flush()
    elif fmt == "json":
        lines = "".join(json.dumps(row, default=str) + "\n" for row in result.to_pylist())
        if output:
            output.write_text(lines)
        else:
            sys.stdout.write(lines)
    else:
        table = Table(*result.column_names)
        cells = [["" if v is None else str(v) for v in row.values()] for row in result.slice(0, max_rows).to_pylist()]
        for row in cells:
            table.add_row(*row)
        if not console.is_terminal:  # a table asked for in a pipe: as wide as its content, never squeezed
            widths = [max([len(name), *(len(r[i]) for r in cells)]) + 3 for i, name in enumerate(result.column_names)]
            console = Console(file=console.file, width=max(80, sum(widths) + 1))
        console.print(table)
        if result.num_rows > max_rows:
            console.print(f"... {result.num_rows - max_rows:,} more rows (use --format csv or json for all)")
        if hidden:
            console.print(f"... {hidden} more columns (--columns a,b,c picks them; --format csv shows all)")
