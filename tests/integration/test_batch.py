"""Big pulls through Databento's batch API, against the replay gateway's batch endpoints: the same
rows as streaming, the job id in the manifest before the first poll, never submitted or downloaded
twice, and every fault (SIGKILL while polling or downloading, 429 on submit, a corrupt file, an
expired job) ending in a clear error or a resumed run."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest

from lake.storage import open_lake
from tests.conftest import DATASET, HIST, Gateway, HistRunner

TRADES = ["--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4,NQH4", "--start-date", "2024-01-02",
          "--end-date", "2024-01-04"]


def calls(gateway: Gateway, endpoint: str) -> list[dict[str, object]]:
    return [r for r in gateway.admin("requests") if str(r["path"]).startswith(endpoint)]  # type: ignore[union-attr]


def rows(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT (instrument_id, ts_recv_ns, sequence)) FROM trades_data"
                            ).fetchone()  # type: ignore[return-value]


def source_count(gateway: Gateway) -> int:
    from databento import DBNStore

    from tools.generate import instrument_id

    ids = {instrument_id(DATASET, s) for s in ("ESH4", "NQH4")}
    return sum(int(r.instrument_id in ids) for day in ("2024-01-02", "2024-01-03")
               for r in DBNStore.from_file(gateway.data / DATASET / "trades" / f"{day}.dbn.zst"))


def test_ingest_via_batch_lands_the_same_rows_as_streaming_with_one_submission(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    result = hist("ingest", *TRADES, "--via", "batch")

    assert len(calls(gateway, "/v0/batch.submit_job")) == 1 and gateway.requests() == []
    assert len(calls(gateway, "/v0/batch/download")) == 2, "a file a day, each its own chunk"
    assert "extract: 2 chunks" in result.stdout and "load: 2 chunks loaded" in result.stdout
    assert rows(database_url) == (source_count(gateway),) * 2
    events = open_lake(hist.lake).manifest().events()
    submitted = [e for e in events if e.status == "submitted"]
    assert len(submitted) == 1 and submitted[0].batch_job
    gateway.admin("requests", [])

    again = hist("ingest", *TRADES, "--via", "batch")

    assert calls(gateway, "/v0/batch") == [] and gateway.requests() == [], "nothing asked for twice"
    assert "2 already in the lake" in again.stdout


def test_batch_given_429_on_submit_retries_and_corrupt_file_is_downloaded_again(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    gateway.faults({"kind": "429", "count": 2, "retry_after": 0, "path": "/v0/batch.submit_job"},
                   {"kind": "corrupt", "count": 1, "path": "/v0/batch/download"})

    hist("ingest", *TRADES, "--via", "batch")

    assert len(calls(gateway, "/v0/batch.submit_job")) == 3
    assert len(calls(gateway, "/v0/batch/download")) == 3, "the corrupt file once more, the other once"
    assert rows(database_url) == (source_count(gateway),) * 2


def test_batch_given_corrupt_file_every_time_fails_that_file_with_its_hash(hist: HistRunner, gateway: Gateway) -> None:
    gateway.faults({"kind": "corrupt", "count": 100, "path": "/v0/batch/download"})

    result = hist("ingest", *TRADES, "--via", "batch", check=False)

    assert result.returncode == 1 and "sha256 differs from the job's file list" in result.stderr
    assert not list((hist.lake / "raw").rglob("*.dbn.zst")), "nothing unverified is committed"
    gateway.faults()
    gateway.admin("requests", [])
    hist("ingest", *TRADES, "--via", "batch")
    assert calls(gateway, "/v0/batch.submit_job") == [], "a bad file of a good job: the same job again"


def test_batch_given_expired_job_says_so_and_a_rerun_submits_a_new_one(hist: HistRunner, slow_jobs: Gateway,
                                                                         database_url: str) -> None:
    gateway = slow_jobs
    job_id = killed_while_polling(hist, gateway)
    gateway.admin("batch", {"expire": job_id})

    expired = hist("ingest", *TRADES, "--via", "batch", check=False)

    assert expired.returncode == 1 and f"job {job_id} expired" in expired.stderr
    hist("ingest", *TRADES, "--via", "batch")
    assert len(calls(gateway, "/v0/batch.submit_job")) == 2
    assert rows(database_url) == (source_count(gateway),) * 2


def test_batch_given_sigkill_while_polling_polls_the_same_job_again(hist: HistRunner, slow_jobs: Gateway,
                                                                     database_url: str) -> None:
    gateway = slow_jobs
    job_id = killed_while_polling(hist, gateway)

    hist("ingest", *TRADES, "--via", "batch")

    assert len(calls(gateway, "/v0/batch.submit_job")) == 1, f"job {job_id} was polled again, not submitted again"
    assert rows(database_url) == (source_count(gateway),) * 2


def test_batch_given_sigkill_during_a_download_resumes_it_with_a_range_request(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    gateway.faults({"kind": "slow", "delay": 30, "count": 1, "path": "/v0/batch/download"})
    process = start(hist, gateway, "/v0/batch/download")
    time.sleep(0.5)  # the first block of the file is on disk
    process.send_signal(signal.SIGKILL)
    process.wait()
    gateway.faults()

    hist("ingest", *TRADES, "--via", "batch")

    downloads = calls(gateway, "/v0/batch/download")
    assert len(calls(gateway, "/v0/batch.submit_job")) == 1
    assert any(d.get("range") for d in downloads), "the partial file was resumed, not fetched whole again"
    assert rows(database_url) == (source_count(gateway),) * 2


@pytest.mark.parametrize(("schema", "end"), [("trades", "2024-01-03"), ("ohlcv-1h", "2024-01-04")],
                         ids=["one day of ticks", "a month window of hourly bars"])
def test_batch_given_one_file_covering_the_whole_request_commits_it(
        hist: HistRunner, gateway: Gateway, database_url: str, schema: str, end: str) -> None:
    job = ["--dataset", DATASET, "--schema", schema, "--symbols", "ESH4,NQH4", "--start-date", "2024-01-02",
           "--end-date", end]

    result = hist("ingest", *job, "--via", "batch")

    assert "extract: 1 chunks" in result.stdout and "0 failed" in result.stdout, result.stdout + result.stderr
    assert len(calls(gateway, "/v0/batch/download")) == 1
    table = "trades_data" if schema == "trades" else "ohlcv_data"
    with psycopg.connect(database_url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # type: ignore[index]


def test_batch_given_submit_answer_lost_adopts_the_job_it_made_instead_of_paying_twice(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    gateway.faults({"kind": "truncate", "after_bytes": 0, "count": 1, "path": "/v0/batch.submit_job"})

    hist("ingest", *TRADES, "--via", "batch")

    jobs = gateway.admin("batch")["jobs"]  # type: ignore[index]
    assert len(calls(gateway, "/v0/batch.submit_job")) == 1 and len(jobs) == 1, "the lost submit made the only job"
    assert calls(gateway, "/v0/batch.list_jobs"), "looked up before submitting again"
    assert rows(database_url) == (source_count(gateway),) * 2


def test_batch_given_503s_while_polling_keeps_the_job_and_a_rerun_polls_it_again(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    gateway.faults({"kind": "500", "status": 503, "count": 100, "path": "/v0/batch.get_job_details"})

    failed = hist("ingest", *TRADES, "--via", "batch", check=False)

    assert failed.returncode == 1 and "HTTP 503" in failed.stderr, failed.stderr
    gateway.faults()
    hist("ingest", *TRADES, "--via", "batch")
    assert len(calls(gateway, "/v0/batch.submit_job")) == 1, "one job, polled again"
    assert rows(database_url) == (source_count(gateway),) * 2


def test_batch_given_job_delivered_in_part_downloads_the_rest_from_it_without_a_new_job(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    gateway.faults({"kind": "corrupt", "count": 4, "path": "/v0/batch/download"})  # the first file, every retry

    partial = hist("ingest", *TRADES, "--via", "batch", check=False)

    assert partial.returncode == 1 and "extract: 1 chunks" in partial.stdout, partial.stdout + partial.stderr
    gateway.faults()
    gateway.admin("requests", [])
    rest = hist("ingest", *TRADES, "--via", "batch")
    assert calls(gateway, "/v0/batch.submit_job") == [] and gateway.requests() == [], "nothing bought again"
    assert len(calls(gateway, "/v0/batch/download")) == 1 and "1 from batch jobs already paid for" in rest.stdout
    assert rows(database_url) == (source_count(gateway),) * 2


def test_streamed_rerun_of_a_chunk_an_open_job_holds_takes_it_from_the_job(
        hist: HistRunner, slow_jobs: Gateway, database_url: str) -> None:
    gateway = slow_jobs
    killed_while_polling(hist, gateway)

    hist("ingest", *TRADES)  # auto: streaming by size, but the job is paid for

    assert gateway.requests() == [] and len(calls(gateway, "/v0/batch.submit_job")) == 1
    assert rows(database_url) == (source_count(gateway),) * 2


def test_symbol_added_while_a_job_is_open_buys_that_symbol_alone(
        hist: HistRunner, slow_jobs: Gateway, database_url: str) -> None:
    gateway = slow_jobs
    killed_while_polling(hist, gateway)  # a job for ESH4 and NQH4, not delivered yet
    grown = [*TRADES[:5], "ESH4,ESM4,NQH4", *TRADES[6:]]

    hist("ingest", *grown)

    assert {str(r["params"]["symbols"]) for r in gateway.requests()} == {"ESM4"}  # type: ignore[index]
    assert len(calls(gateway, "/v0/batch.submit_job")) == 1
    with psycopg.connect(database_url) as conn:
        assert {s for (s,) in conn.execute("SELECT DISTINCT symbol FROM trades_data")} == {"ESH4", "ESM4", "NQH4"}


@pytest.fixture
def slow_jobs(gateway: Gateway) -> Iterator[Gateway]:
    """Jobs that stay in each state for 50 polls, so a test can act while one is being polled."""
    gateway.admin("batch", {"polls_per_state": 50})
    yield gateway
    gateway.admin("batch", {"polls_per_state": 1})


def start(hist: HistRunner, gateway: Gateway, wait_for: str) -> subprocess.Popen[bytes]:
    """`hist ingest --via batch` in the background, once the gateway has seen `wait_for`."""
    process = subprocess.Popen([str(HIST), "ingest", *TRADES, "--via", "batch"], env=hist.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        if calls(gateway, wait_for):
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the gateway never saw {wait_for}")


def killed_while_polling(hist: HistRunner, gateway: Gateway) -> str:
    """SIGKILL `hist ingest --via batch` while it polls its job; the job's id, from the manifest. The
    gateway's jobs then move on at the usual pace."""
    process = start(hist, gateway, "/v0/batch.get_job_details")
    lines = (hist.lake / "manifest" / "events.jsonl").read_text().splitlines()
    job_id = next(json.loads(line)["batch_job"] for line in lines if '"submitted"' in line)
    process.send_signal(signal.SIGKILL)
    process.wait()
    gateway.admin("batch", {"polls_per_state": 1})
    return str(job_id)
