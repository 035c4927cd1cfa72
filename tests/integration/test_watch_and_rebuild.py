"""Watch mode lands a freshly extracted chunk in TimescaleDB within seconds and stops cleanly on
SIGTERM; a second database rebuilt from the lake alone equals the first."""

from __future__ import annotations

import signal
import subprocess
import time

import psycopg

from tests.conftest import DATASET, HIST, Gateway, HistRunner
from tests.integration.test_chaos import fingerprint

SMALL = ["--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4", "--start-date", "2024-01-02",
         "--end-date", "2024-01-03"]


def rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('trades_data')").fetchone()
        return conn.execute("SELECT count(*) FROM trades_data").fetchone()[0] if exists and exists[0] else 0  # type: ignore[index]


def test_watch_given_extract_commit_lands_rows_within_seconds_and_stops_on_sigterm(
        any_lake: HistRunner, database_url: str) -> None:
    hist = any_lake  # on S3 it polls the manifest: an object store sends no file events
    watcher = subprocess.Popen([str(HIST), "watch"], env=hist.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        time.sleep(2.0)
        hist("stage", "extract", *SMALL)
        committed = time.monotonic()
        while rows(database_url) == 0 and time.monotonic() - committed < 20:
            time.sleep(0.1)
        latency = time.monotonic() - committed
    finally:
        watcher.send_signal(signal.SIGTERM)
        stdout, stderr = watcher.communicate(timeout=30)

    assert rows(database_url) == 2000, stderr
    assert latency < 5, f"{latency:.1f}s from commit to rows"
    assert watcher.returncode == 0 and "stopped after" in stdout
    assert "load: 1 chunks loaded" in stdout


def test_load_all_given_empty_database_rebuilds_it_from_the_lake_without_api_calls(
        hist: HistRunner, gateway: Gateway, database_url: str, timescale: str) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4,NQH4", "--start-date",
         "2024-01-02", "--end-date", "2024-01-04")
    requests_before = len(gateway.requests())
    rebuilt = database_url + "_rebuilt"
    with psycopg.connect(timescale, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {rebuilt.rsplit('/', 1)[1]}")
    try:
        env = dict(hist.env, DATABENTO_API_KEY="", DATABENTO_GATEWAY="127.0.0.1:9")
        result = subprocess.run([str(HIST), "stage", "load", "--db", rebuilt], env=env,
                                capture_output=True, text=True, check=True)
        assert "load: 2 chunks loaded" in result.stdout
        assert fingerprint(rebuilt) == fingerprint(database_url) and fingerprint(rebuilt)[0] == 8000
    finally:
        with psycopg.connect(timescale, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {rebuilt.rsplit('/', 1)[1]} WITH (FORCE)")
    assert len(gateway.requests()) == requests_before
