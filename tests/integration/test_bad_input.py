"""Bad input: one clear line naming the problem, a non-zero exit, nothing half-committed; secrets
never shown."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from lake.storage import open_lake
from tests.conftest import DATASET, Gateway, HistRunner

JOB = ["--dataset", DATASET, "--schema", "ohlcv-1m", "--symbols", "ESH4", "--start-date", "2024-01-02",
       "--end-date", "2024-01-04", "--chunk-days", "1"]  # a chunk a day: one fails, the other lands


def error_line(result: object) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


def nothing_in_lake(hist: HistRunner) -> bool:
    return not hist.lake.exists() or not [p for p in hist.lake.rglob("*") if p.is_file() and "locks" not in p.parts]


@pytest.mark.parametrize(("args", "expected"), [
    (["--dataset", "glbx", *JOB[2:]], "field dataset: 'glbx' is not a Databento dataset code"),
    ([*JOB[:2], "--schema", "ohlcv-7m", *JOB[4:]], "unknown schema 'ohlcv-7m' (supported:"),
    ([*JOB[:8], "--end-date", "2024-01-01"], "end_date 2024-01-01 must be after start_date 2024-01-02"),
    ([*JOB[:4], "--symbols", " , ", *JOB[6:]], "field symbols: the symbol list is empty"),
    ([*JOB[:8], "--end-date", "tomorrow"], "--end-date: 'tomorrow' is not a date"),
    (["--job", "nope"], "no job named 'nope'"),
])
def test_ingest_given_bad_request_exits_with_one_line(hist: HistRunner, gateway: Gateway, args: list[str],
                                                      expected: str) -> None:
    result = hist("ingest", *args, check=False)

    assert result.returncode == 1 and expected in error_line(result)
    assert gateway.requests() == [] and nothing_in_lake(hist)


def test_ingest_given_dataset_the_vendor_rejects_fails_with_its_detail(hist: HistRunner, gateway: Gateway) -> None:
    result = hist("ingest", "--dataset", "XNAS.ITCH", *JOB[2:], check=False)

    assert result.returncode == 1 and "HTTP 422: Invalid dataset 'XNAS.ITCH'" in result.stderr
    assert not list((hist.lake / "raw").rglob("*.dbn.zst"))


@pytest.mark.parametrize(("text", "expected"), [
    ("api: [unclosed\n", "malformed YAML"),
    ("mapping_config_path: m.yaml\nvalidation_schema_paths: []\nmax_concurrency: -1\n",
     "field max_concurrency: Input should be greater than or equal to 1 (got -1)"),
])
def test_ingest_given_bad_config_file_names_file_and_field(hist: HistRunner, tmp_path: Path, text: str,
                                                           expected: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)

    result = hist("ingest", "--config", str(bad), *JOB, check=False)

    line = error_line(result)
    assert result.returncode == 1 and str(bad) in line and expected in line


def test_extract_given_2500_symbols_splits_into_two_requests(hist: HistRunner, gateway: Gateway) -> None:
    symbols = ",".join(["ESH4", *(f"ZZ{i}" for i in range(2499))])

    result = hist("stage", "extract", "--dataset", DATASET, "--schema", "ohlcv-1d", "--symbols", symbols,
                  "--start-date", "2024-01-02", "--end-date", "2024-01-03")

    assert "extract: 2 chunks" in result.stdout
    assert sorted(len(r["params"]["symbols"].split(",")) for r in gateway.requests()) == [500, 2000]  # type: ignore[index]


def test_transform_given_corrupt_raw_file_fails_that_chunk_and_transforms_the_other(
        hist: HistRunner, database_url: str) -> None:
    hist("stage", "extract", *JOB)
    events = sorted(open_lake(hist.lake).manifest().latest("extract").values(), key=lambda e: e.chunk.start)
    corrupt = hist.lake / events[0].file("raw").path  # type: ignore[union-attr]
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])

    transform = hist("stage", "transform", check=False)
    load = hist("stage", "load")

    assert transform.returncode == 1 and f"chunk {events[0].chunk_id}: cannot decode" in transform.stderr
    assert "transform: 1 chunks" in transform.stdout and "load: 1 chunks loaded" in load.stdout
    failed = open_lake(hist.lake).manifest().latest("transform", "failed")
    assert list(failed) == [events[0].chunk_id] and "cannot decode" in (failed[events[0].chunk_id].error or "")
    verify = hist("lake", "verify", check=False)
    assert verify.returncode == 1 and f"changed: {events[0].file('raw').path}" in verify.stderr  # type: ignore[union-attr]
    with psycopg.connect(database_url) as conn:
        days = conn.execute("SELECT count(DISTINCT date(ts_event AT TIME ZONE 'UTC')) FROM ohlcv_data").fetchone()
        assert days == (1,)


def test_lake_verify_given_missing_file_reports_it(hist: HistRunner) -> None:
    hist("stage", "extract", *JOB)
    assert "0 missing or changed" in hist("lake", "verify").stdout
    victim = next((hist.lake / "raw").rglob("*.dbn.zst"))
    victim.unlink()

    result = hist("lake", "verify", check=False)

    assert result.returncode == 1 and f"missing: {victim.relative_to(hist.lake)}" in result.stderr


def test_load_given_unreachable_database_retries_then_fails_without_showing_the_password(hist: HistRunner) -> None:
    hist("stage", "extract", *JOB)
    hist("stage", "transform")
    password = "s3cret" + "pw"  # built at run time: no DSN with a password is committed
    hist.env["HIST_DATABASE_URL"] = "postgresql://hist:" + password + "@127.0.0.1:9/hist"

    result = hist("stage", "load", check=False)

    line = error_line(result)
    masked = "postgresql://hist:" + "*" * 3 + "@127.0.0.1:9/hist"
    assert result.returncode == 1 and f"database unreachable at {masked}" in line
    assert "after 5 attempts" in line and password not in result.stderr + result.stdout


def test_extract_given_no_api_key_says_so(hist: HistRunner, gateway: Gateway) -> None:
    del hist.env["DATABENTO_API_KEY"]

    result = hist("ingest", *JOB, check=False)

    assert result.returncode == 1 and "no Databento API key" in error_line(result)
    assert gateway.requests() == []


def test_api_key_never_reaches_logs_manifest_lake_or_errors(hist: HistRunner, gateway: Gateway,
                                                            tmp_path: Path) -> None:
    gateway.faults({"kind": "500", "count": 1}, {"kind": "500", "status": 422, "count": 1,
                                                  "match": {"start": "2024-01-03"}})
    outputs = [hist("-v", "ingest", *JOB, check=False), hist("-v", "lake", "status")]

    key = gateway.key
    assert all(key not in r.stdout + r.stderr for r in outputs)
    assert all(key.encode() not in p.read_bytes() for p in hist.lake.rglob("*") if p.is_file())
    assert "HTTP 422" in outputs[0].stderr
    helps = [hist(*cmd, "--help").stdout for cmd in (["ingest"], ["stage", "extract"])]
    assert all("--key" not in h and "api-key" not in h for h in helps), "the key is never a command-line argument"
    shutil.rmtree(tmp_path / "lake", ignore_errors=True)
