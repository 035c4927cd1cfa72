"""Bought bytes on a lake in S3 (moto behind a proxy the test takes down): a download whose commit the
store refuses is kept and committed by the next run without downloading again, and a committed file
leaves local scratch (an S3 commit copies it; a local one renames)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HIST, Gateway, HistRunner
from tests.integration.test_batch import rows, source_count
from tests.integration.test_s3_cluster import on_s3
from tools.local_cluster import S3Endpoint

TRADES = ["--dataset", "GLBX.MDP3", "--schema", "trades", "--symbols", "ESH4,NQH4", "--start-date", "2024-01-02",
          "--end-date", "2024-01-04"]


def downloaded_files(scratch: Path) -> list[Path]:
    return [p for p in scratch.rglob("*.dbn*") if p.is_file()]


def test_download_whose_commit_the_store_refuses_is_committed_by_the_next_run_without_downloading(
        hist: HistRunner, gateway: Gateway, database_url: str, moto_s3: S3Endpoint, tmp_path: Path) -> None:
    lake = on_s3(hist, moto_s3, f"s3://{moto_s3.new_bucket('hist-kept')}/lake", tmp_path / "scratch",
                 HIST_S3_RETRY_SECONDS="2")
    gateway.faults({"kind": "slow", "delay": 3, "count": 2})  # both days' downloads take a few seconds
    process = subprocess.Popen([str(HIST), "ingest", *TRADES], env=lake.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        while len(gateway.requests()) < 2 and process.poll() is None:
            time.sleep(0.05)
        moto_s3.proxy.down()  # the store goes away while both downloads are under way
        stdout, stderr = process.communicate(timeout=120)
    finally:
        moto_s3.proxy.up()
    gateway.faults()

    assert process.returncode == 1 and "still failing after 2 s" in stderr, stdout + stderr
    assert len(downloaded_files(tmp_path / "scratch")) == 2, "the bought bytes wait for their commit"
    gateway.admin("requests", [])
    again = lake("ingest", *TRADES)
    assert gateway.requests() == [], "committed from the kept bytes, nothing downloaded twice"
    assert "extract: 2 chunks" in again.stdout
    assert rows(database_url) == (source_count(gateway),) * 2
    assert downloaded_files(tmp_path / "scratch") == []


@pytest.mark.parametrize("via", ["stream", "batch"])
def test_committed_downloads_leave_local_scratch_of_an_s3_lake(
        via: str, hist: HistRunner, gateway: Gateway, database_url: str, moto_s3: S3Endpoint, tmp_path: Path) -> None:
    lake = on_s3(hist, moto_s3, f"s3://{moto_s3.new_bucket('hist-scratch')}/lake", tmp_path / "scratch")

    lake("ingest", *TRADES, "--via", via)

    assert rows(database_url) == (source_count(gateway),) * 2
    assert downloaded_files(tmp_path / "scratch") == [], "a 5 GB job would leak 5 GB"
