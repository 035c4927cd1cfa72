"""Output that fits where it goes: progress bars and the columns that matter first for a person at a
terminal; plain CSV and no progress bar when the output goes into a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess

from tests.conftest import DATASET, HIST, HistRunner

JOB = ["ingest", "--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4,NQH4", "--start-date", "2024-01-02",
       "--end-date", "2024-01-04"]
BAR = "━"  # rich's bar glyph
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(hist: HistRunner, stdout_to_terminal: bool, args: list[str] = JOB) -> str:
    """Run hist with stderr (and stdout, if asked) on a pseudo-terminal; everything the terminal got."""
    controller, terminal = pty.openpty()
    env = {**hist.env, "TERM": "xterm-256color", "COLUMNS": "120"}
    process = subprocess.Popen([str(HIST), *args], env=env, stderr=terminal,
                               stdout=terminal if stdout_to_terminal else subprocess.PIPE)
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    piped = process.communicate(timeout=120)[0] or b""
    os.close(controller)
    assert process.returncode == 0, (seen + piped).decode(errors="replace")
    return ANSI.sub("", (seen + piped).decode(errors="replace"))


def test_ingest_given_a_terminal_draws_progress_bars_per_stage(hist: HistRunner) -> None:
    shown = run_on_terminal(hist, stdout_to_terminal=True)

    assert BAR in shown
    assert all(stage in shown for stage in ("extract", "transform", "load"))
    assert "load: 2 chunks loaded" in shown


def test_ingest_given_stdout_in_a_pipe_draws_no_progress_bar(hist: HistRunner) -> None:
    shown = run_on_terminal(hist, stdout_to_terminal=False)

    assert BAR not in shown and "load: 2 chunks loaded" in shown


QUERY = ["query", "--schema", "trades", "--symbols", "ESH4", "--start-date", "2024-01-02", "--end-date", "2024-01-03",
         "--limit", "5"]


def test_query_given_a_terminal_shows_the_columns_that_matter_first_and_columns_picks_others(
        hist: HistRunner) -> None:
    hist(*JOB)

    table = run_on_terminal(hist, stdout_to_terminal=True, args=QUERY)
    header = next(line for line in table.splitlines() if "ts_event" in line)
    picked = hist(*QUERY, "--columns", "sequence,price", "-f", "csv").stdout.splitlines()

    assert [h for h in ("ts_event", "symbol", "price", "size", "side") if h in header] == [
        "ts_event", "symbol", "price", "size", "side"]
    assert "sequence" not in header and "more columns (--columns a,b,c picks them" in table
    assert picked[0] == '"sequence","price"' and len(picked) == 6
