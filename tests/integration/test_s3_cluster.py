"""Beyond one machine: the lake on S3 (moto's standalone server, the real S3 protocol over HTTP) and
extract and transform chunks as tasks on a real Dask cluster (a scheduler and two worker processes),
all started by the tests on loopback. Load stays in the `hist` process."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from distributed import Client

from lake.formats import ChunkSpec
from lake.leases import LeaseLost
from lake.object_lake import ObjectLake
from lake.object_manifest import ObjectManifest
from lake.paths import MANIFEST_EVENTS
from tests.conftest import HIST, Gateway, HistRunner
from tools.generate import generate
from tools.local_cluster import DaskCluster, S3Endpoint, start_dask_cluster

DATASET = "XCLU.TEST"
SYMBOLS = ["ESH4", "NQH4"]
DAYS = 6
TRADES_PER_DAY = 40_000  # per symbol
TRADES = DAYS * len(SYMBOLS) * TRADES_PER_DAY
LEASE_SECONDS = "4"
FINGERPRINT = """
SELECT count(*), count(DISTINCT (instrument_id, ts_recv_ns, sequence, dup_ordinal)),
       sum(hashtextextended(concat_ws('|', ts_event_ns, ts_recv_ns, dataset, publisher_id, instrument_id, symbol,
           raw_symbol, price, size, action, side, flags, depth, ts_in_delta, sequence, dup_ordinal), 0)::numeric)
FROM trades_data"""


def job(days: int = DAYS) -> list[str]:
    return ["--dataset", DATASET, "--schema", "trades", "--symbols", ",".join(SYMBOLS),
            "--start-date", "2024-03-04", "--end-date", f"2024-03-{4 + days:02d}"]


def fingerprint(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(FINGERPRINT).fetchone()  # type: ignore[return-value]


def second_database(database_url: str, name: str) -> str:
    """Another empty database on the same server (dropped with the cluster)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return database_url.rsplit("/", 1)[0] + f"/{name}"


def on_s3(hist: HistRunner, s3: S3Endpoint, lake_url: str, scratch: Path, **extra: str) -> HistRunner:
    env = {**hist.env, **s3.env, "HIST_LAKE": lake_url, "HIST_SCRATCH": str(scratch),
           "HIST_LEASE_SECONDS": LEASE_SECONDS, **extra}
    return HistRunner(env, hist.lake)


def worker_env(gateway: Gateway, s3: S3Endpoint, scratch: Path) -> dict[str, str]:
    """What a cluster worker needs in its own environment: the key never travels with the tasks."""
    return {**s3.env, "DATABENTO_API_KEY": gateway.key, "DATABENTO_GATEWAY": gateway.url,
            "REQUESTS_CA_BUNDLE": str(gateway.cert), "HIST_SCRATCH": str(scratch),
            "HIST_LEASE_SECONDS": LEASE_SECONDS, "TZ": os.environ.get("TZ", "UTC")}


def get_ranges(gateway: Gateway) -> list[str]:
    """The window start of every get_range the gateway served."""
    return [str(r["params"]["start"]) for r in gateway.requests()]  # type: ignore[index]


def committed(lake: ObjectLake, stage: str) -> list[str]:
    """Chunk ids of every committed event of `stage`, repeats included."""
    return [e.chunk_id for e in ObjectManifest(lake).events() if e.stage == stage and e.status == "committed"]


def executed_per_worker(cluster: DaskCluster) -> dict[str, int]:
    with Client(cluster.address, timeout="20s") as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)  # type: ignore[no-any-return]


@pytest.fixture
def s3_env(moto_s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """moto's credentials in this process's environment too, for tests that read the lake: straight from
    moto, so that they see the lake while the hist processes under test go through the proxy."""
    for key, value in {**moto_s3.env, "AWS_ENDPOINT_URL": moto_s3.url}.items():
        monkeypatch.setenv(key, value)
    return moto_s3


@pytest.fixture
def cluster_data(gateway: Gateway) -> None:
    generate(gateway.data, DATASET, SYMBOLS, date(2024, 3, 4), date(2024, 3, 4 + DAYS), ["trades"], seed=11,
             trades_per_day=TRADES_PER_DAY)


@pytest.fixture
def cluster(gateway: Gateway, moto_s3: S3Endpoint, tmp_path: Path) -> Iterator[DaskCluster]:
    with start_dask_cluster(worker_env(gateway, moto_s3, tmp_path / "worker-scratch"), workers=2, threads=2,
                            log_dir=tmp_path / "dask-logs") as running:
        yield running


def test_ingest_on_s3_and_dask_gives_the_same_database_as_a_local_run(
        hist: HistRunner, gateway: Gateway, database_url: str, moto_s3: S3Endpoint, cluster: DaskCluster,
        cluster_data: None, tmp_path: Path) -> None:
    hist("ingest", *job())
    local = fingerprint(database_url)
    gateway.admin("requests", [])
    cluster_db = second_database(database_url, f"{database_url.rsplit('/', 1)[1]}_cluster")
    lake_url = f"s3://{moto_s3.new_bucket('hist-lake')}/history"
    remote = on_s3(hist, moto_s3, lake_url, tmp_path / "client-scratch", HIST_DATABASE_URL=cluster_db)

    started = time.monotonic()
    result = remote("ingest", *job(), "--scheduler", cluster.address)
    seconds = time.monotonic() - started
    executed = executed_per_worker(cluster)
    status = remote("lake", "status", "--format", "csv")
    verified = remote("lake", "verify")
    in_lake = remote("lake", "query", "SELECT count(*) AS n FROM trades_data", "--format", "csv")

    assert fingerprint(cluster_db) == local
    assert "load: 6 chunks loaded" in result.stdout
    assert len(get_ranges(gateway)) == DAYS
    assert all(n > 0 for n in executed.values()) and sum(executed.values()) >= 2 * DAYS, executed
    assert in_lake.stdout.split() == ['"n"', str(local[0])]
    assert "verified 12 files in " + lake_url + ": 0 missing or changed" in verified.stdout
    assert status.stdout.splitlines()[1].startswith('"extract",6,')
    print(f"\ncluster ingest: {DAYS} chunks, {local[0]:,} trades on s3 + 2 Dask workers in {seconds:.1f} s; "
          f"tasks per worker {sorted(executed.values())}; database equal to the local run "
          f"(rows, distinct keys, content hash); {len(get_ranges(gateway))} get_range calls; lake verify clean")


@pytest.mark.parametrize("stage", ["extract", "transform"])
def test_worker_killed_mid_chunk_the_task_is_retried_and_no_committed_chunk_is_downloaded_again(
        stage: str, hist: HistRunner, gateway: Gateway, database_url: str, s3_env: S3Endpoint,
        cluster: DaskCluster, cluster_data: None, tmp_path: Path) -> None:
    """SIGKILL a worker while it runs a chunk's extract (a download) or transform. Dask retries the task
    on the other worker, which takes the chunk over when the dead worker's lease lapses. A download the
    kill cut off is the one thing requested again (a streamed request cannot resume); no committed
    chunk ever is."""
    moto_s3 = s3_env
    local_db = second_database(database_url, f"{database_url.rsplit('/', 1)[1]}_local")
    HistRunner({**hist.env, "HIST_DATABASE_URL": local_db}, hist.lake)("ingest", *job())
    gateway.admin("requests", [])
    if stage == "extract":
        gateway.faults({"kind": "slow", "delay": 0.2, "count": 10_000})  # downloads long enough to be cut off
    lake_url = f"s3://{moto_s3.new_bucket(f'hist-kill-{stage}')}/history"
    remote = on_s3(hist, moto_s3, lake_url, tmp_path / "client-scratch")
    lake = ObjectLake.from_url(lake_url)
    process = subprocess.Popen([str(HIST), "ingest", *job(), "--scheduler", cluster.address], env=remote.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with Client(cluster.address, timeout="20s") as client:
        pids = client.run(os.getpid)
        deadline, busy = time.monotonic() + 120, []
        while time.monotonic() < deadline and process.poll() is None:
            busy = [address for address, keys in client.processing().items()
                    if any(str(key).startswith(f"{stage}_task") for key in keys)]
            if busy and committed(lake, "extract"):
                break
            time.sleep(0.02)
    assert busy, f"no {stage} task was running to be killed"
    victim = [w.pid for w in cluster.workers].index(pids[busy[0]])
    killed_at = time.time()
    cluster.kill_worker(victim)  # SIGKILL while it runs a chunk
    stdout, stderr = process.communicate(timeout=300)
    gateway.faults()

    assert process.returncode == 0, stdout + stderr + cluster.logs()
    assert cluster.workers[victim].poll() is not None and len(cluster.worker_pids()) == 1
    requests = [(str(r["params"]["start"]), float(r["time"])) for r in gateway.requests()]  # type: ignore[index,arg-type]
    windows = [start for start, _ in requests]
    again = {start for start in windows if windows.count(start) > 1}
    assert set(windows) == {f"2024-03-{4 + d:02d}T00:00:00+00:00" for d in range(DAYS)}
    first_asked = {start: min(t for s, t in requests if s == start) for start in again}
    assert all(asked < killed_at for asked in first_asked.values()), "asked again for a chunk not in flight"
    assert len(again) <= 2 and all(windows.count(start) == 2 for start in again)  # the victim's 2 threads at most
    if stage == "transform":
        assert not again
    assert sorted(committed(lake, "extract")) == sorted(set(committed(lake, "extract")))
    assert len(set(committed(lake, "transform"))) == DAYS
    assert fingerprint(database_url) == fingerprint(local_db)
    assert "0 missing or changed" in remote("lake", "verify").stdout
    print(f"\nworker killed mid-{stage}: retried, database equal to the local run; "
          f"{len(windows)} get_range calls for {DAYS} chunks ({len(again)} cut off by the kill and asked again)")


def test_two_processes_with_separate_scratch_commit_each_chunk_once(
        hist: HistRunner, gateway: Gateway, database_url: str, s3_env: S3Endpoint, cluster_data: None,
        tmp_path: Path) -> None:
    moto_s3 = s3_env
    lake_url = f"s3://{moto_s3.new_bucket('hist-two')}/history"
    runners = [on_s3(hist, moto_s3, lake_url, tmp_path / f"scratch-{i}") for i in range(2)]
    processes = [subprocess.Popen([str(HIST), "ingest", *job()], env=r.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for r in runners]
    outputs = [p.communicate(timeout=300) for p in processes]
    lake = ObjectLake.from_url(lake_url)

    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sorted(committed(lake, "extract")) == sorted(set(committed(lake, "extract")))
    assert len(committed(lake, "extract")) == DAYS
    assert sorted(committed(lake, "transform")) == sorted(set(committed(lake, "transform")))
    assert len(get_ranges(gateway)) == DAYS
    rows, distinct, _ = fingerprint(database_url)
    assert rows == distinct == TRADES


def test_event_written_between_list_and_create_makes_the_loser_back_off(s3_env: S3Endpoint,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    moto_s3 = s3_env
    lake = ObjectLake.from_url(f"s3://{moto_s3.new_bucket('hist-race')}/lake")
    chunk = ChunkSpec(dataset=DATASET, schema="trades", source_schema="trades", stype_in="raw_symbol",
                      symbols=("ESH4",), start=datetime(2024, 3, 4, tzinfo=UTC), end=datetime(2024, 3, 5, tzinfo=UTC))
    ours, theirs = ObjectManifest(lake), ObjectManifest(lake)
    listed = lake.list_after
    interleaved = threading.Event()

    def list_then_lose_the_race(prefix: str, after: str = "") -> list[str]:
        keys = listed(prefix, after)
        if prefix == MANIFEST_EVENTS and not interleaved.is_set():
            interleaved.set()
            theirs.record("transform", chunk)  # another process takes the number we are about to use
        return keys

    monkeypatch.setattr(lake, "list_after", list_then_lose_the_race)
    ours.record("extract", chunk)
    monkeypatch.undo()

    keys = lake.list_after(MANIFEST_EVENTS)
    stages = [e.stage for e in ObjectManifest(lake).events()]
    assert interleaved.is_set()
    assert keys == ["000000000001.json", "000000000002.json"]
    assert stages == ["transform", "extract"]


def test_s3_endpoint_down_retries_then_fails_in_one_line_with_nothing_half_committed(
        hist: HistRunner, gateway: Gateway, database_url: str, s3_env: S3Endpoint, cluster_data: None,
        tmp_path: Path) -> None:
    moto_s3 = s3_env
    gateway.faults({"kind": "slow", "delay": 0.3, "count": 10_000})
    brief_url, long_url = (f"s3://{moto_s3.new_bucket(name)}/history" for name in ("hist-brief", "hist-down"))
    patient = on_s3(hist, moto_s3, brief_url, tmp_path / "scratch")
    impatient = on_s3(hist, moto_s3, long_url, tmp_path / "scratch", HIST_S3_RETRY_SECONDS="3")

    brief = through_an_outage(patient, ["--log-format", "json", "stage", "extract", *job()], moto_s3)
    try:
        down = mid_run(impatient, ["ingest", *job()], ObjectLake.from_url(long_url), moto_s3.proxy.down)
    finally:
        moto_s3.proxy.up()
    gateway.faults()

    assert brief.returncode == 0 and brief_url in brief.stderr, brief.stderr
    assert len(committed(ObjectLake.from_url(brief_url), "extract")) == DAYS
    assert down.returncode == 1, down.stdout + down.stderr
    errors = [line for line in down.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and long_url in errors[0] and "still failing after 3 s" in errors[0], down.stderr
    assert "Traceback" not in down.stderr
    lake = ObjectLake.from_url(long_url)
    done = set(committed(lake, "extract"))
    assert 0 < len(done) < DAYS
    assert "0 missing or changed" in impatient("lake", "verify").stdout
    impatient("ingest", *job())
    rows, distinct, _ = fingerprint(database_url)
    assert rows == distinct == TRADES
    assert len(committed(lake, "extract")) == DAYS


def through_an_outage(runner: HistRunner, args: list[str], s3: S3Endpoint) -> subprocess.CompletedProcess[str]:
    """Run hist with S3 down until hist says it is retrying a lake call, then bring S3 back."""
    s3.proxy.down()
    try:
        process = subprocess.Popen([str(HIST), *args], env=runner.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if '"event": "retried"' in line and '"stage": "lake"' in line:
                break
    finally:
        s3.proxy.up()
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(args, process.returncode, stdout, "".join(seen) + stderr)


def mid_run(runner: HistRunner, args: list[str], lake: ObjectLake, outage: Callable[[], object]
            ) -> subprocess.CompletedProcess[str]:
    """Run hist; once it has committed two chunks, call `outage`, then wait for hist to end."""
    process = subprocess.Popen([str(HIST), *args], env=runner.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while len(committed(lake, "extract")) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    outage()
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def test_create_retried_after_a_lost_answer_recognises_its_own_object(s3_env: S3Endpoint) -> None:
    lake = ObjectLake.from_url(f"s3://{s3_env.new_bucket('hist-own')}/lake")

    first = lake.create("manifest/events/000000000001.json", b'{"event_id": "ours"}')
    again = lake.create("manifest/events/000000000001.json", b'{"event_id": "ours"}')  # our answer was lost
    other = lake.create("manifest/events/000000000001.json", b'{"event_id": "theirs"}')

    assert (first, again, other) == (True, True, False)


def test_worker_that_lost_its_lease_cannot_commit(s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIST_LEASE_SECONDS", "1")
    lake = ObjectLake.from_url(f"s3://{s3_env.new_bucket('hist-lost')}/lake")
    chunk = ChunkSpec(dataset=DATASET, schema="trades", source_schema="trades", stype_in="raw_symbol",
                      symbols=("ESH4",), start=datetime(2024, 3, 4, tzinfo=UTC), end=datetime(2024, 3, 5, tzinfo=UTC))
    taken_over = lake.leases._create  # another worker wins every renewal from now on

    with lake.lock("transform", chunk.chunk_id) as locked:
        monkeypatch.setattr(lake.leases, "_create", lambda *args: False)
        time.sleep(1.2)
        with pytest.raises(LeaseLost, match="lapsed and another worker took it over"):
            lake.manifest().record("transform", chunk)
        monkeypatch.setattr(lake.leases, "_create", taken_over)

    assert locked
    assert committed(lake, "transform") == []
