"""Shared fixtures: a real TimescaleDB cluster, the replay gateway over HTTPS, generated data, and a
helper that runs the `hist` command the way a user does."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest
import requests
import yaml

from tools.generate import generate
from tools.local_cluster import S3Endpoint, start_moto

ROOT = Path(__file__).resolve().parent.parent
HIST = Path(sys.executable).parent / "hist"
CONFIG = ROOT / "configs" / "api_specific" / "databento_config.yaml"
DATASET = "GLBX.MDP3"
SYMBOLS = ["ESH4", "ESM4", "NQH4"]
ALL_SCHEMAS = ["ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "trades", "tbbo", "statistics", "definition"]
START, END = date(2024, 1, 2), date(2024, 1, 4)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def timescale() -> Iterator[str]:
    """The DSN of a throwaway TimescaleDB cluster (or HIST_TEST_DATABASE_URL's server)."""
    if os.environ.get("HIST_TEST_DATABASE_URL"):
        yield os.environ["HIST_TEST_DATABASE_URL"]
        return
    cluster = Path(tempfile.mkdtemp(prefix="hist-pg-"))
    script = ROOT / "tools" / "timescaledb.sh"
    dsn = subprocess.run(["bash", str(script), "start", str(cluster), str(free_port())], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    yield dsn
    subprocess.run(["bash", str(script), "stop", str(cluster)], check=False)
    shutil.rmtree(cluster, ignore_errors=True)


@pytest.fixture
def database_url(timescale: str) -> Iterator[str]:
    """A fresh, empty database on the cluster for one test."""
    name = f"hist_test_{secrets.token_hex(4)}"
    with psycopg.connect(timescale, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield timescale.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(timescale, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def replay_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay")
    generate(root, DATASET, SYMBOLS, START, END, ALL_SCHEMAS, seed=11, trades_per_day=2000)
    for version in (1, 2):  # older DBN layouts of the records whose layout changed
        generate(root, f"XV{version}.TEST", SYMBOLS, START, END, ["statistics", "definition"], seed=version,
                 trades_per_day=1, version=version)
    return root


@dataclass
class Gateway:
    url: str
    cert: Path
    key: str
    data: Path

    def admin(self, path: str, body: object | None = None) -> object:
        url = f"https://{self.url}/_admin/{path}"
        response = (requests.post(url, json=body, verify=self.cert, timeout=10) if body is not None
                    else requests.get(url, verify=self.cert, timeout=10))
        response.raise_for_status()
        return response.json()

    def requests(self) -> list[dict[str, object]]:
        return [r for r in self.admin("requests") if r["path"] == "/v0/timeseries.get_range"]  # type: ignore[union-attr]

    def faults(self, *faults: dict[str, object]) -> None:
        self.admin("faults", list(faults))


@contextmanager
def serving(data: Path, state: Path) -> Iterator[Gateway]:
    """The replay gateway over `data` (generated, or real samples laid out by tools/samples.py)."""
    key = f"db-test{secrets.token_hex(10)}"
    port_file = state / "port"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "gateway.py"), "--data", str(data), "--port", "0",
         "--cert-dir", str(state / "certs"), "--port-file", str(port_file)],
        env={**os.environ, "DATABENTO_API_KEY": key}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            break
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "gateway died"
        time.sleep(0.05)
    yield Gateway(f"127.0.0.1:{port_file.read_text()}", state / "certs" / "cert.pem", key, data)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def gateway_server(replay_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serving(replay_data, tmp_path_factory.mktemp("gateway")) as server:
        yield server


@pytest.fixture
def gateway(gateway_server: Gateway) -> Iterator[Gateway]:
    """The session's gateway with an empty request log, no faults and no batch jobs."""
    gateway_server.faults()
    gateway_server.admin("requests", [])
    gateway_server.admin("batch", {"forget": True})
    yield gateway_server
    gateway_server.faults()


@dataclass
class HistRunner:
    env: dict[str, str]
    lake: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(HIST), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"hist {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def test_config(tmp_path: Path) -> Path:
    """The shipped config with fast retries (tests inject faults) and absolute mapping paths."""
    config = yaml.safe_load(CONFIG.read_text())
    config["retry_policy"] = {"max_attempts": 4, "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.2,
                              "jitter_seconds": 0.0}
    config["batch_poll_seconds"] = 0.05
    config["mapping_config_path"] = str(ROOT / "configs" / "databento_mappings.yaml")
    config["validation_schema_paths"] = [str(ROOT / "configs" / "validation" / "databento_rules.yaml")]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def runner_for(gateway: Gateway, database_url: str, lake: Path, config: Path) -> HistRunner:
    env = {**os.environ, "DATABENTO_API_KEY": gateway.key, "DATABENTO_GATEWAY": gateway.url,
           "REQUESTS_CA_BUNDLE": str(gateway.cert), "HIST_DATABASE_URL": database_url,
           "HIST_LAKE": str(lake), "HIST_CONFIG": str(config)}
    return HistRunner(env, lake)


@pytest.fixture
def hist(gateway: Gateway, database_url: str, tmp_path: Path, test_config: Path) -> HistRunner:
    return runner_for(gateway, database_url, tmp_path / "lake", test_config)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """moto's standalone S3 server (the real protocol over HTTP on loopback), behind a proxy that tests
    can take down."""
    with start_moto(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def any_lake(request: pytest.FixtureRequest, hist: HistRunner, tmp_path: Path) -> HistRunner:
    """`hist` with its lake in a local folder, and again with it on S3."""
    if request.param == "local":
        return hist
    s3: S3Endpoint = request.getfixturevalue("moto_s3")
    return HistRunner({**hist.env, **s3.env, "HIST_LAKE": f"s3://{s3.new_bucket('hist-lake')}/lake",
                       "HIST_SCRATCH": str(tmp_path / "scratch")}, hist.lake)
