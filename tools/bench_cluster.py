"""`make bench-cluster`: each stage's throughput with the lake in a local folder (in-process, as today)
and with the lake on S3 (moto's standalone server) and extract and transform on a Dask cluster of one
worker process and of two, all on this machine. Writes the table to docs/scaling.md's measured section
(between its markers) and prints it.

    python tools/bench_cluster.py [--days 6] [--trades-per-day 400000]

One worker is one `dask worker --nthreads 1` process, so "two workers" is two processes. On a single
machine the workers share its cores with moto, the replay gateway and TimescaleDB: the figures say what a
second worker buys here, not on separate machines (docs/scaling.md models that).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.bench import bench_config, generate, job_args, start_services  # noqa: E402
from tools.bench_measure import count_rows, drop_databases, fresh_database, hist  # noqa: E402
from tools.local_cluster import start_dask_cluster, start_moto  # noqa: E402

DATASET, SCHEMA, SYMBOLS, START = "BNCH.CLUSTER", "trades", ["ESH4", "NQH4"], date(2024, 2, 5)
BEGIN, END = "<!-- bench-cluster:begin -->", "<!-- bench-cluster:end -->"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    setup: str
    extract_s: float
    transform_s: float
    load_s: float
    records: int
    raw_mb: float
    helpers_cpu: dict[str, dict[str, float]] | None = None  # stage -> helper -> CPU seconds

    def cells(self) -> list[str]:
        rate = self.records / 1e6
        return [self.setup, f"{self.extract_s:.1f} s ({self.raw_mb / self.extract_s:.1f} MB/s)",
                f"{self.transform_s:.1f} s ({rate / self.transform_s:.2f} M rec/s)",
                f"{self.load_s:.1f} s ({rate / self.load_s:.2f} M rows/s)",
                f"{self.extract_s + self.transform_s + self.load_s:.1f} s"]


def measure(setup: str, env: dict[str, str], job: list[str], scheduler: list[str], raw_bytes: int,
            helpers: dict[str, list[int]]) -> Row:
    """Each stage alone, with the CPU time of `helpers` (name -> pids: the gateway, moto, the workers)."""
    print(f"{setup}: extract, transform, load ...", flush=True)
    used: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for stage, args in (("extract", ["stage", "extract", *job, "--yes", *scheduler]),
                        ("transform", ["stage", "transform", *scheduler]), ("load", ["stage", "load"])):
        before = {name: cpu_seconds(pids) for name, pids in helpers.items()}
        seconds[stage] = hist(env, *args).seconds
        used[stage] = {name: cpu_seconds(pids) - before[name] for name, pids in helpers.items()}
    return Row(setup, seconds["extract"], seconds["transform"], seconds["load"],
               count_rows(env["HIST_DATABASE_URL"], "trades_data"), raw_bytes / 1e6, used)


def render(rows: list[Row], days: int, per_day: int) -> str:
    lines = [BEGIN, "",
             f"`make bench-cluster`: {days} daily chunks of trades, {per_day * len(SYMBOLS):,} a day "
             f"({rows[0].records:,} in all), each stage run alone (`hist stage ...`), wall time including "
             "process start-up.", "",
             "| setup | extract | transform | load | total |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += ["", f"CPU seconds used during each stage by the replay gateway, moto and the Dask workers (the "
              f"machine has {os.cpu_count()} cores; the `hist` process and TimescaleDB come on top):", ""]
    lines += [f"- {row.setup}: " + "; ".join(
        f"{stage}: " + ", ".join(f"{name} {cpu:.1f} s" for name, cpu in by_helper.items())
        for stage, by_helper in row.helpers_cpu.items()) for row in rows if row.helpers_cpu]
    lines += ["", END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else f"{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + section + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--trades-per-day", type=int, default=1_000_000, help="per symbol")
    parser.add_argument("--state", type=Path, default=ROOT / ".hist" / "bench-cluster")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md")
    args = parser.parse_args()
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABENTO_API_KEY": f"db-bench{secrets.token_hex(8)}",
           "HIST_CONFIG": str(bench_config(state))}
    end = START + timedelta(days=args.days)
    marker = state / "data" / f".generated-{args.days}-{args.trades_per_day}"
    if not marker.exists():
        print("generating data ...", flush=True)
        shutil.rmtree(state / "data", ignore_errors=True)
        generate(state / "data", DATASET, SCHEMA, SYMBOLS, START, end, args.trades_per_day, seed=7)
        marker.touch()
    job = job_args(DATASET, SCHEMA, SYMBOLS, START, end)
    raw_bytes = sum(p.stat().st_size for p in (state / "data" / DATASET / SCHEMA).glob("*.dbn.zst"))
    server, gateway = start_services(state, env)
    databases: list[str] = []

    def place(name: str, lake: str, **extra: str) -> dict[str, str]:
        databases.append(f"bench_cluster_{name}")
        return {**env, "HIST_LAKE": lake, "HIST_DATABASE_URL": fresh_database(server, databases[-1], env), **extra}

    rows: list[Row] = []
    try:
        shutil.rmtree(state / "lake", ignore_errors=True)
        rows.append(measure("local folder, in-process", place("local", str(state / "lake")), job, [], raw_bytes,
                            {"gateway": [gateway.pid]}))
        with start_moto(state) as s3:
            worker_env = {**s3.env, "HIST_SCRATCH": str(state / "worker-scratch"),
                          **{k: env[k] for k in ("DATABENTO_API_KEY", "DATABENTO_GATEWAY", "REQUESTS_CA_BUNDLE")}}
            for workers in (1, 2):
                bucket = s3.new_bucket(f"bench-{workers}")
                run_env = place(f"s3_{workers}", f"s3://{bucket}/lake", **s3.env,
                                HIST_SCRATCH=str(state / "client-scratch"))
                with start_dask_cluster(worker_env, workers=workers, threads=1) as cluster:
                    label = f"S3 (moto) + {workers} Dask worker{'s' if workers > 1 else ''}"
                    rows.append(measure(label, run_env, job, ["--scheduler", cluster.address], raw_bytes,
                                        {"gateway": [gateway.pid], "moto": [s3.pid],
                                         "workers": cluster.worker_pids()}))
    finally:
        gateway.terminate()
        gateway.wait()
        drop_databases(server, databases)
        subprocess.run(["bash", str(ROOT / "tools" / "timescaledb.sh"), "stop", str(state / "pg")], check=False)
    section = render(rows, args.days, args.trades_per_day)
    print(section)
    write_section(args.out, section)


if __name__ == "__main__":
    began = time.perf_counter()
    main()
    print(f"bench-cluster took {time.perf_counter() - began:.0f} s")
