"""Faults injected by the replay gateway: retried when transient, a clear failure of that chunk only
when not, nothing half-written either way; and a rerun never pays for a committed chunk twice."""

from __future__ import annotations

import psycopg

from lake.storage import open_lake
from tests.conftest import DATASET, Gateway, HistRunner

TWO_DAYS = ["--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4", "--start-date", "2024-01-02",
            "--end-date", "2024-01-04"]


def requests_for(gateway: Gateway, day: str) -> int:
    return sum(1 for r in gateway.requests() if r["params"]["start"].startswith(day))  # type: ignore[index]


def no_temporary_files(hist: HistRunner) -> bool:
    return [p for p in (hist.lake / "tmp").rglob("*") if p.is_file()] == []


def test_extract_given_429_with_retry_after_retries_and_commits(hist: HistRunner, gateway: Gateway) -> None:
    gateway.faults({"kind": "429", "count": 2, "retry_after": 0.1, "match": {"start": "2024-01-02"}})

    result = hist("stage", "extract", *TWO_DAYS)

    assert "extract: 2 chunks" in result.stdout and "0 failed" in result.stdout
    assert requests_for(gateway, "2024-01-02") == 3 and requests_for(gateway, "2024-01-03") == 1


def test_extract_given_5xx_and_cut_off_bodies_retries_and_leaves_no_partial_file(hist: HistRunner,
                                                                                 gateway: Gateway) -> None:
    gateway.faults({"kind": "500", "count": 1, "status": 503, "match": {"start": "2024-01-02"}},
                   {"kind": "truncate", "count": 2, "after_bytes": 300, "match": {"start": "2024-01-03"}})

    result = hist("-v", "stage", "extract", *TWO_DAYS)

    assert "0 failed" in result.stdout and "retrying" in result.stderr
    assert requests_for(gateway, "2024-01-02") == 2 and requests_for(gateway, "2024-01-03") == 3
    assert no_temporary_files(hist)
    assert hist("lake", "verify").returncode == 0


def test_extract_given_persistent_5xx_fails_that_chunk_only(hist: HistRunner, gateway: Gateway,
                                                            database_url: str) -> None:
    gateway.faults({"kind": "500", "count": 99, "match": {"start": "2024-01-03"}})

    result = hist("ingest", *TWO_DAYS, check=False)

    assert result.returncode == 1
    assert "HTTP 500" in result.stderr and "trades-20240103-20240104" in result.stderr
    assert requests_for(gateway, "2024-01-03") == 4, "max_attempts of the test config"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT date(ts_recv AT TIME ZONE 'UTC'))"
                            " FROM trades_data").fetchone() == (2000, 1)
    failed = open_lake(hist.lake).manifest().latest("extract", "failed")
    assert [e.chunk.start.day for e in failed.values()] == [3] and no_temporary_files(hist)

    gateway.faults()
    rerun = hist("ingest", *TWO_DAYS)
    assert "1 already in the lake" in rerun.stdout and requests_for(gateway, "2024-01-02") == 1


def test_extract_given_client_error_does_not_retry(hist: HistRunner, gateway: Gateway) -> None:
    gateway.faults({"kind": "500", "status": 422, "count": 5})

    result = hist("stage", "extract", *TWO_DAYS[:-2], "--end-date", "2024-01-03", check=False)

    assert result.returncode == 1 and "HTTP 422" in result.stderr
    assert len(gateway.requests()) == 1


def test_extract_given_slow_stream_still_commits(hist: HistRunner, gateway: Gateway) -> None:
    gateway.faults({"kind": "slow", "delay": 0.3, "count": 4})

    assert "0 failed" in hist("stage", "extract", *TWO_DAYS).stdout


def test_extract_given_day_without_data_commits_an_explicit_empty_chunk(hist: HistRunner, gateway: Gateway,
                                                                        database_url: str) -> None:
    result = hist("ingest", "--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4",
                  "--start-date", "2024-01-04", "--end-date", "2024-01-05")

    assert "extract: 1 chunks (0 records" in result.stdout
    event = next(iter(open_lake(hist.lake).manifest().latest("extract").values()))
    assert event.file("raw").records == 0  # type: ignore[union-attr]
    assert "2 already" not in hist("ingest", "--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4",
                                   "--start-date", "2024-01-04", "--end-date", "2024-01-05").stdout
    assert len(gateway.requests()) == 1


def test_extract_given_cost_above_limit_stops_before_any_download(hist: HistRunner, gateway: Gateway) -> None:
    dry = hist("ingest", *TWO_DAYS, "--dry-run")
    stopped = hist("ingest", *TWO_DAYS, "--max-cost", "0.0000001", check=False)

    assert "2 to download: 4,000 records, 192,000 bytes" in dry.stdout
    assert stopped.returncode == 1 and "exceeds max_cost_usd" in stopped.stderr
    assert gateway.requests() == [] and not list((hist.lake / "raw").rglob("*.dbn.zst"))
    assert "extract: 2 chunks" in hist("ingest", *TWO_DAYS, "--max-cost", "0.0000001", "--yes").stdout


def test_derived_schema_given_its_source_bytes_bought_downloads_nothing(hist: HistRunner, gateway: Gateway) -> None:
    bars = ["--dataset", DATASET, "--symbols", "ESH4", "--start-date", "2024-01-02", "--end-date", "2024-01-04"]
    hist("stage", "extract", "--schema", "ohlcv-1m", *bars)
    bought = len(gateway.requests())

    plan = hist("ingest", "--schema", "ohlcv-5m", *bars, "--dry-run")
    run = hist("ingest", "--schema", "ohlcv-5m", *bars)

    assert "1 reusing bytes already bought, 0 from batch jobs already paid for, 0 to download" in plan.stdout
    assert "1 reusing bytes already bought" in run.stdout and "load: 1 chunks loaded" in run.stdout
    assert len(gateway.requests()) == bought == 1
