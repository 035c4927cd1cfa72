"""Crash safety: stage processes killed with SIGKILL at random points, rerun, end with a database
equal to an uninterrupted run's — same rows, none missing, no duplicates — and a lake that verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from datetime import date
from pathlib import Path

import psycopg
import pytest

from tests.conftest import HIST, Gateway, HistRunner
from tools.generate import generate

DATASET = "XCHS.TEST"
DAYS = 24
JOB = ["--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4,NQH4", "--start-date", "2024-02-01",
       "--end-date", f"2024-02-{1 + DAYS:02d}"]
MIN_KILLS = 21
FINGERPRINT = """
SELECT count(*), count(DISTINCT (instrument_id, ts_recv_ns, sequence, dup_ordinal)),
       sum(hashtextextended(concat_ws('|', ts_event_ns, ts_recv_ns, dataset, publisher_id, instrument_id, symbol,
           raw_symbol, price, size, action, side, flags, depth, ts_in_delta, sequence, dup_ordinal), 0)::numeric)
FROM trades_data"""


def fingerprint(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(FINGERPRINT).fetchone()  # type: ignore[return-value]


def run_until_killed(args: list[str], env: dict[str, str], delay: float) -> bool:
    """Start a stage, SIGKILL it after `delay` seconds; True if it was still running when killed."""
    process = subprocess.Popen([str(HIST), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


@pytest.fixture
def chaos_data(gateway: Gateway) -> None:
    generate(gateway.data, DATASET, ["ESH4", "NQH4"], date(2024, 2, 1), date(2024, 2, 1 + DAYS), ["trades"],
             seed=5, trades_per_day=20_000)


def test_sigkill_at_random_points_ends_equal_to_an_uninterrupted_run(
        chaos_data: None, hist: HistRunner, gateway: Gateway, database_url: str, timescale: str,
        tmp_path: Path) -> None:
    rng = random.Random(2024)
    gateway.faults({"kind": "slow", "delay": 0.25, "count": 10_000})
    kills = {"extract": 0, "transform": 0, "load": 0}
    stages = {"extract": ["stage", "extract", *JOB], "transform": ["stage", "transform"], "load": ["stage", "load"]}
    started, extracted = time.monotonic(), False
    for _ in range(60):
        if sum(kills.values()) >= MIN_KILLS and min(kills.values()) >= 5:
            break
        for stage, args in stages.items():
            if kills[stage] < 9:
                kills[stage] += run_until_killed(args, hist.env, rng.uniform(0.6, 1.8))
            elif stage == "extract" and not extracted:  # enough extract kills: the rest lands, so that
                hist(*args)                                  # transform and load still have work to be killed in
                extracted = True
    for args in stages.values():  # finish the job
        hist(*args)

    chaos_seconds = time.monotonic() - started
    print(f"chaos: {kills} SIGKILLs in {chaos_seconds:.0f}s")
    assert sum(kills.values()) >= MIN_KILLS and min(kills.values()) >= 5, kills
    assert hist("lake", "verify").returncode == 0
    assert [p for p in (hist.lake / "tmp").rglob("*") if p.is_file()] == []

    gateway.faults()
    reference = dict(hist.env, HIST_LAKE=str(tmp_path / "reference-lake"),
                     HIST_DATABASE_URL=database_url.rsplit("/", 1)[0] + "/" + database_url.rsplit("/", 1)[1] + "_ref")
    with psycopg.connect(timescale, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {reference['HIST_DATABASE_URL'].rsplit('/', 1)[1]}")
    try:
        subprocess.run([str(HIST), "ingest", *JOB], env=reference, check=True, capture_output=True)
        expected = fingerprint(reference["HIST_DATABASE_URL"])
    finally:
        with psycopg.connect(timescale, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {reference['HIST_DATABASE_URL'].rsplit('/', 1)[1]} WITH (FORCE)")

    assert expected[0] == expected[1] == DAYS * 2 * 20_000
    assert fingerprint(database_url) == expected, f"after {kills} kills in {chaos_seconds:.0f}s"


def listen_to_ctrl_c() -> None:
    """A terminal's Ctrl-C reaches hist; a test run from a background job (CI) inherits SIGINT
    ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ingest_given_sigkill_and_ctrl_c_mid_run_resumes_to_every_row_once(
        chaos_data: None, hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    """`hist ingest` overlaps its stages in one process: killing it anywhere leaves nothing half-done."""
    rng = random.Random(7)
    gateway.faults({"kind": "slow", "delay": 0.25, "count": 10_000})
    process = subprocess.Popen([str(HIST), "ingest", *JOB], env=hist.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=listen_to_ctrl_c)
    while not gateway.requests() and process.poll() is None:  # on an empty lake: mid-run, however slow
        time.sleep(0.05)                                        # the machine is to start it
    process.send_signal(signal.SIGINT)  # Ctrl-C
    _, interrupted = process.communicate(timeout=120)
    kills = sum(run_until_killed(["ingest", *JOB], hist.env, rng.uniform(0.8, 2.0)) for _ in range(5))
    gateway.faults()

    hist("ingest", *JOB)

    assert kills >= 3
    assert process.returncode == 130 and "interrupted: committed chunks are kept" in interrupted
    assert "Traceback" not in interrupted
    with psycopg.connect(database_url) as conn:
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT (instrument_id, ts_recv_ns, sequence))"
                                       " FROM trades_data").fetchone()  # type: ignore[misc]
    assert count == distinct == DAYS * 2 * 20_000
    assert hist("lake", "verify").returncode == 0
    assert [p for p in (hist.lake / "tmp").rglob("*") if p.is_file()] == []
