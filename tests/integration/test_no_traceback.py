"""No command ever answers with a traceback: missing arguments, invalid values, an empty lake, a
missing database, a lake it cannot write to and an S3 store or Dask scheduler that does not answer all
end in one line and exit 1 (2 for usage)."""

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
    "an unreachable store or cluster": [["ingest", *JOB, "--scheduler", "tcp://127.0.0.1:9"], ["lake", "status"],
                                        ["stage", "transform", "--scheduler", "tcp://127.0.0.1:9"],
                                        ["lake", "verify"], ["quarantine", "ls"]],
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
    unreachable_s3 = {**env, "HIST_LAKE": "s3://hist-nowhere/lake", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                      "AWS_ACCESS_KEY_ID": "test" + "key", "AWS_SECRET_ACCESS_KEY": "test" + "secret",
                      "AWS_DEFAULT_REGION": "us-east-1", "HIST_S3_RETRY_SECONDS": "1"}
    for n, args in enumerate(CASES[case]):
        # the first unreachable case runs on a local lake, which no cluster can share; the rest on a dead S3
        run_env = unreachable_s3 if case == "an unreachable store or cluster" and n else env
        result = subprocess.run([str(HIST), *args], env=run_env, capture_output=True, text=True, timeout=120,
                                cwd=tmp_path)
        said = result.stdout + result.stderr
        assert "Traceback" not in said, f"hist {' '.join(args)}:\n{said}"
        assert result.returncode in (0, 1, 2), (args, result.returncode, said)
        if result.returncode == 1:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) >= 1 and all(len(e) < 400 for e in errors), (args, result.stderr)
