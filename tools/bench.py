"""`make bench`: time hist on synthetic data served by the replay gateway, against baselines measured in the
same run on the same data and database server, and write one markdown report (docs/benchmarks.md).

    python tools/bench.py [--window-trades 16000000] [--bar-days 365] [--out docs/benchmarks.md]

Cases:
- trades: --window-trades trades of 2 symbols in ONE UTC day. Each stage alone (`hist stage extract /
  transform / load`) against DBNStore.to_parquet() (transform) and a plain binary COPY (load); then one
  `hist ingest` of the same window into a fresh database, with its peak RSS, against the plain binary COPY
  of the same rows into the same hypertable and against the hand-written get_range -> to_df -> CSV COPY
  path (measured on the first --handwritten-hours hours of the window and compared by rate).
- bars: a year of 1-minute bars for 10 symbols, each stage alone (transform against to_parquet), then
  the same job as one `hist ingest --via batch` (the gateway's batch API) with its row count.
- daily: ten years of daily bars for 5 symbols in one `hist ingest`, with its get_range request count.
Every command runs as its own process; peak RSS is its VmHWM (tools/bench_measure.py). Data is generated
in subprocesses so the bench process stays small. Prints PASS/FAIL against the targets; CI asserts none.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.bench_measure import (  # noqa: E402
    HANDWRITTEN,
    PLAIN_COPY,
    TO_PARQUET,
    count_rows,
    drop_databases,
    fresh_database,
    gateway_requests,
    hist,
    python,
)
from tools.bench_report import render  # noqa: E402

TRADES = ("BNCH.TRADES", "trades", ["ESH4", "NQH4"], date(2024, 1, 2), date(2024, 1, 3))
BAR_SYMBOLS = ["ESH4", "NQH4", "YMH4", "RTYH4", "CLH4", "GCG4", "SIH4", "ZNH4", "ZBH4", "6EH4"]
DAILY = ("BNCH.DAILY", "ohlcv-1d", ["ESH4", "NQH4", "YMH4", "CLH4", "GCG4"], date(2014, 3, 5), date(2024, 3, 5))
POLL_SECONDS = 0.2


def job_args(dataset: str, schema: str, symbols: list[str], start: date, end: date) -> list[str]:
    return ["--dataset", dataset, "--schema", schema, "--symbols", ",".join(symbols), "--start-date",
            start.isoformat(), "--end-date", end.isoformat()]


def generate(data: Path, dataset: str, schema: str, symbols: list[str], start: date, end: date, per_day: int,
             seed: int) -> None:
    """tools.generate.generate (each schema drawn on its own) in its own process: the bench's own RSS stays
    small (see bench_measure)."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from datetime import date; from pathlib import Path\n"
            "from tools.generate import generate\n"
            f"generate(Path({str(data)!r}), {dataset!r}, {symbols!r}, date.fromisoformat({start.isoformat()!r}), "
            f"date.fromisoformat({end.isoformat()!r}), [{schema!r}], seed={seed}, trades_per_day={per_day})")
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)


def bench_config(state: Path) -> Path:
    """The project config with a short batch poll interval; its relative paths made absolute."""
    source = ROOT / "configs" / "api_specific" / "databento_config.yaml"
    config = yaml.safe_load(source.read_text())
    config["batch_poll_seconds"] = POLL_SECONDS
    config["mapping_config_path"] = str((source.parent / config["mapping_config_path"]).resolve())
    config["validation_schema_paths"] = [str((source.parent / p).resolve()) for p in config["validation_schema_paths"]]
    path = state / "bench_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_services(state: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    dsn = subprocess.run(["bash", str(ROOT / "tools" / "timescaledb.sh"), "start", str(state / "pg"), "55499"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port_file = state / "gateway.port"
    port_file.unlink(missing_ok=True)
    shutil.rmtree(state / "batch", ignore_errors=True)
    gateway = subprocess.Popen([sys.executable, str(ROOT / "tools" / "gateway.py"), "--data", str(state / "data"),
                                "--port", "0", "--cert-dir", str(state / "certs"), "--port-file", str(port_file),
                                "--batch-dir", str(state / "batch")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (port_file.exists() and port_file.read_text()):
        if gateway.poll() is not None:
            raise SystemExit("the replay gateway did not start")
        time.sleep(0.05)
    env["DATABENTO_GATEWAY"] = f"127.0.0.1:{port_file.read_text()}"
    env["REQUESTS_CA_BUNDLE"] = str(state / "certs" / "cert.pem")
    return dsn, gateway


def files(lake: Path, area: str, pattern: str) -> list[str]:
    return sorted(str(p) for p in (lake / area).rglob(pattern))


class Bench:
    def __init__(self, state: Path, env: dict[str, str], server: str) -> None:
        self.state, self.env, self.server = state, env, server
        self.databases: list[str] = []

    def place(self, name: str, database: bool = True) -> dict[str, str]:
        """The environment of one measurement: its own empty lake and, with database, a fresh database."""
        lake = self.state / f"lake-{name}"
        shutil.rmtree(lake, ignore_errors=True)
        env = dict(self.env, HIST_LAKE=str(lake))
        if database:
            self.databases.append(f"bench_{name.replace('-', '_')}")
            env["HIST_DATABASE_URL"] = fresh_database(self.server, self.databases[-1], self.env)
        return env

    def clean(self) -> None:
        """Drop what the measurements wrote (tens of GB at full size); the generated data stays for a rerun."""
        drop_databases(self.server, self.databases)
        for path in [*self.state.glob("lake-*"), *self.state.glob("to_parquet-*"), self.state / "batch"]:
            shutil.rmtree(path, ignore_errors=True)

    def stages(self, name: str, job: list[str], table: str) -> dict[str, Any]:
        """Each stage alone, then to_parquet of the same raw files and a plain COPY of the same rows."""
        print(f"{name}: hist stage extract / transform / load ...", flush=True)
        env = self.place(f"{name}-stages")
        measures = {"extract": hist(env, "stage", "extract", *job, "--yes", "--via", "stream"),
                    "transform": hist(env, "stage", "transform"),
                    "load": hist(env, "stage", "load")}
        records = count_rows(env["HIST_DATABASE_URL"], table)
        lake = Path(env["HIST_LAKE"])
        print(f"{name}: DBNStore.to_parquet and plain COPY ...", flush=True)
        out = self.state / f"to_parquet-{name}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        to_parquet = python(TO_PARQUET.format(raw=files(lake, "raw", "*.dbn.zst"), out=str(out)), self.env)
        copy_env = self.place(f"{name}-copy")
        copy = python(PLAIN_COPY.format(table=table, files=files(lake, "standardized", "*.parquet")), copy_env)
        copied = count_rows(copy_env["HIST_DATABASE_URL"], table)
        return {"records": records, "stages": measures, "to_parquet": to_parquet, "copy": copy, "copied": copied}

    def ingest(self, name: str, job: list[str], table: str, via: str = "stream") -> dict[str, Any]:
        print(f"{name}: hist ingest --via {via} ...", flush=True)
        env = self.place(f"{name}-ingest-{via}")
        measure = hist(env, "--log-format", "json", "ingest", *job, "--yes", "--via", via, quiet=False)
        return {"measure": measure, "records": count_rows(env["HIST_DATABASE_URL"], table)}


def benchmark(bench: Bench, hours: int, bar_window: tuple[date, date]) -> dict[str, Any]:
    dataset, schema, symbols, start, end = TRADES
    trades_job = job_args(dataset, schema, symbols, start, end)
    results: dict[str, Any] = {"trades": bench.stages("trades", trades_job, "trades_data")}
    results["window"] = bench.ingest("trades", trades_job, "trades_data")
    print(f"trades: hand-written get_range -> to_df -> CSV COPY ({hours} h) ...", flush=True)
    env = bench.place("handwritten")
    sample_end = f"{start.isoformat()}T{hours:02d}:00:00"
    results["handwritten"] = python(HANDWRITTEN.format(dataset=dataset, symbols=symbols, start=start.isoformat(),
                                                       end=sample_end), env)
    bars_job = job_args("BNCH.BARS", "ohlcv-1m", BAR_SYMBOLS, *bar_window)
    results["bars"] = bench.stages("bars", bars_job, "ohlcv_data")
    results["batch"] = bench.ingest("bars", bars_job, "ohlcv_data", via="batch")
    gateway_requests(bench.env, clear=True)
    results["daily"] = bench.ingest("daily", job_args(*DAILY), "ohlcv_data")
    log = gateway_requests(bench.env)
    results["daily"]["requests"] = sum(1 for r in log if r["path"] == "/v0/timeseries.get_range")
    return results


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB RAM, load average {os.getloadavg()[0]:.2f} at start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window-trades", type=int, default=16_000_000, help="trades in the one-day window")
    parser.add_argument("--bar-days", type=int, default=365)
    parser.add_argument("--handwritten-hours", type=int, default=2, help="hours of the window the hand-written "
                        "path runs on (it is compared by rate)")
    parser.add_argument("--state", type=Path, default=ROOT / ".hist" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    began = time.perf_counter()
    host = machine()
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABENTO_API_KEY": f"db-bench{secrets.token_hex(8)}",
           "HIST_CONFIG": str(bench_config(state))}
    dataset, schema, symbols, start, end = TRADES
    per_day = args.window_trades // len(symbols)
    bars_start = date(2023, 1, 1)
    data = state / "data"
    marker = data / f".generated-{per_day}-{args.bar_days}"
    if not marker.exists():
        print("generating data (in subprocesses) ...", flush=True)
        shutil.rmtree(data, ignore_errors=True)
        generate(data, dataset, schema, symbols, start, end, per_day, seed=1)
        generate(data, "BNCH.BARS", "ohlcv-1m", BAR_SYMBOLS, bars_start, bars_start + timedelta(days=args.bar_days),
                 1, seed=2)
        generate(data, *DAILY, 1, seed=3)
        marker.touch()
    server, gateway = start_services(state, env)
    bench = Bench(state, env, server)
    try:
        results = benchmark(bench, args.handwritten_hours, (bars_start, bars_start + timedelta(days=args.bar_days)))
    finally:
        gateway.terminate()
        gateway.wait()
        bench.clean()
        subprocess.run(["bash", str(ROOT / "tools" / "timescaledb.sh"), "stop", str(state / "pg")], check=False)
    results.update(machine=host, window_trades=args.window_trades, hours=args.handwritten_hours,
                   bar_days=args.bar_days, seconds=time.perf_counter() - began)
    report = render(results)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
