"""No command ever answers with a traceback: missing arguments, invalid values, an empty lake, a
missing database and a lake it cannot write to all end in one line and exit 1 (2 for usage)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CONFIG, HIST, free_port

DAY = ["--start-date", "2024-01-02", "--end-date", "2024-01-03"]
JOB = ["--dataset", "GLBX.MDP3", "--schema", "ohlcv-1m", "--symbols", "ESH4", *DAY]
CASES: dict[str, list[list[str]]] = {
    "missing arguments": [["ingest"], ["stage", "extract"], ["query"], ["lake", "query"], ["quarantine", "show", "-f"],
                          ["ingest", "--dataset"]],
    "invalid values": [["ingest", *JOB[:-1], "tomorrow"], ["ingest", "--dataset", "glbx", *JOB[2:]],
                       ["ingest", *JOB[:2], "--schema", "ohlcv-7m", *JOB[4:]],
                       ["stage", "extract", *JOB, "--chunk-days", "0"],
                       ["lake", "status", "-f", "xml"], ["--log-format", "yaml", "lake", "status"],
                       ["query", "--schema", "ohlcv-1m", "--symbols", "ESH4", *DAY, "--interval", "7x"],
                       ["lake", "query", "SELEKT 1"], ["quarantine", "show", "-f", "parquet"],
                       ["ingest", "--job", "nope"], ["ingest", *JOB, "--stype-in", "isin"]],
    "an empty lake": [["lake", "status"], ["lake", "verify"], ["lake", "query", "SELECT * FROM manifest"],
                      ["quarantine", "ls"], ["quarantine", "show"], ["quarantine", "reprocess"],
                      ["stage", "transform"], ["lake", "status", "-f", "json"],
                      ["lake", "query", "SELECT [1, 2] AS list, {'a': 1} AS struct", "-f", "csv"],
                      ["lake", "query", "SELECT [1, 2] AS list, {'a': 1} AS struct", "-f", "table"]],
    "a missing database": [["stage", "load"], ["db", "init"], ["rederive"],
                           ["query", "--schema", "trades", "--symbols", "ESH4", *DAY]],
    "a lake it cannot write to": [["stage", "extract", *JOB], ["ingest", *JOB], ["stage", "transform"]],
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_command_given_bad_input_answers_in_one_line_without_traceback(case: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "HIST_CONFIG": str(CONFIG), "DATABENTO_API_KEY": "db-" + "x" * 29,
           "DATABENTO_GATEWAY": f"127.0.0.1:{free_port()}", "HIST_LAKE": str(tmp_path / "lake"),
           "HIST_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    if case == "a lake it cannot write to":
        env["HIST_LAKE"] = str(blocker / "lake")  # under a file: no one can create it, root included
    for args in CASES[case]:
        result = subprocess.run([str(HIST), *args], env=env, capture_output=True, text=True, timeout=120,
                                cwd=tmp_path)
        said = result.stdout + result.stderr
        assert "Traceback" not in said, f"hist {' '.join(args)}:\n{said}"
        assert result.returncode in (0, 1, 2), (args, result.returncode, said)
        if result.returncode == 1:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) >= 1 and all(len(e) < 400 for e in errors), (args, result.stderr)
