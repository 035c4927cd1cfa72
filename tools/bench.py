"""`make bench`: time each stage and the whole pipeline on synthetic data, against baselines measured in
the same run on the same data and database, and print one markdown table (also docs/benchmarks.md).

    python tools/bench.py [--trades 10000000] [--bar-days 365] [--out docs/benchmarks.md]

Data: --trades trades over 5 instruments and 4 days, and --bar-days of 1-minute bars for 10 symbols,
served by the replay gateway. Stages run as `hist` subprocesses, so peak RSS is each process's own.
Baselines: DBNStore.to_parquet() of the same raw files (transform); one plain binary COPY of the same
rows into the same hypertable, no idempotency (load); DBNStore.to_df() + row-wise INSERT on a capped
sample (the common approach). Prints PASS/FAIL against the targets; nothing here is asserted by CI.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.generate import generate  # noqa: E402

HIST = Path(sys.executable).parent / "hist"
TRADE_SYMBOLS = ["ESH4", "NQH4", "YMH4", "RTYH4", "CLH4"]
BAR_SYMBOLS = ["ESH4", "NQH4", "YMH4", "RTYH4", "CLH4", "GCG4", "SIH4", "ZNH4", "ZBH4", "6EH4"]
TRADE_DAYS = 4
BAR_CHUNK_DAYS = 30  # a month of 1-minute bars per request, as a user would chunk a year
INSERT_SAMPLE = 20_000


@dataclass
class Measure:
    seconds: float
    peak_rss_mib: float
    stdout: str = ""


def run(args: list[str], env: dict[str, str]) -> Measure:
    """Run a command to completion; wall time and the peak RSS of that process. Output goes to files,
    not pipes, so a chatty child never blocks on a full pipe while we wait for its rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed:\n{stdout}\n{stderr[-3000:]}")
    return Measure(seconds, usage.ru_maxrss / 1024, stdout)


def python(code: str, env: dict[str, str]) -> Measure:
    return run([sys.executable, "-c", code], env)


def start_services(state: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    dsn = subprocess.run(["bash", str(ROOT / "tools" / "timescaledb.sh"), "start", str(state / "pg"), "55499"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port_file = state / "gateway.port"
    port_file.unlink(missing_ok=True)
    gateway = subprocess.Popen([sys.executable, str(ROOT / "tools" / "gateway.py"), "--data", str(state / "data"),
                                "--port", "0", "--cert-dir", str(state / "certs"), "--port-file", str(port_file)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (port_file.exists() and port_file.read_text()):
        time.sleep(0.05)
    env["DATABENTO_GATEWAY"] = f"127.0.0.1:{port_file.read_text()}"
    env["REQUESTS_CA_BUNDLE"] = str(state / "certs" / "cert.pem")
    return dsn, gateway


def fresh_database(server_dsn: str, name: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"


def job_args(dataset: str, schema: str, symbols: list[str], start: date, days: int, chunk_days: int) -> list[str]:
    return ["--dataset", dataset, "--schema", schema, "--symbols", ",".join(symbols), "--start-date",
            start.isoformat(), "--end-date", (start + timedelta(days=days)).isoformat(),
            "--chunk-days", str(chunk_days)]


def stage_runs(env: dict[str, str], job: list[str]) -> dict[str, Measure]:
    return {"extract": run([str(HIST), "--quiet", "stage", "extract", *job, "--yes"], env),
            "transform": run([str(HIST), "--quiet", "stage", "transform"], env),
            "load": run([str(HIST), "--quiet", "stage", "load"], env)}


def files(lake: Path, area: str, pattern: str) -> list[str]:
    return sorted(str(p) for p in (lake / area).rglob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--bar-days", type=int, default=365)
    parser.add_argument("--state", type=Path, default=ROOT / ".hist" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABENTO_API_KEY": f"db-bench{secrets.token_hex(8)}",
           "HIST_CONFIG": str(ROOT / "configs" / "api_specific" / "databento_config.yaml")}
    per_day = args.trades // (len(TRADE_SYMBOLS) * TRADE_DAYS)
    trades_start, bars_start = date(2024, 1, 2), date(2023, 1, 1)
    marker = state / "data" / f".generated-{per_day}-{args.bar_days}"
    if not marker.exists():
        print("generating data ...", flush=True)
        generate(state / "data", "BNCH.TRADES", TRADE_SYMBOLS, trades_start, trades_start + timedelta(days=TRADE_DAYS),
                 ["trades"], seed=1, trades_per_day=per_day)
        generate(state / "data", "BNCH.BARS", BAR_SYMBOLS, bars_start, bars_start + timedelta(days=args.bar_days),
                 ["ohlcv-1m"], seed=2, trades_per_day=1)
        marker.touch()
    server, gateway = start_services(state, env)
    try:
        rows = benchmark(env, server, state, per_day, args.bar_days, trades_start, bars_start)
    finally:
        gateway.terminate()
    report = render(rows, args.trades)
    print(report)
    args.out.write_text(report)


def benchmark(env: dict[str, str], server: str, state: Path, per_day: int, bar_days: int, trades_start: date,
              bars_start: date) -> dict[str, object]:
    import shutil

    results: dict[str, object] = {}
    for name, dataset, schema, symbols, start, days, chunk_days in (
            ("trades", "BNCH.TRADES", "trades", TRADE_SYMBOLS, trades_start, TRADE_DAYS, 1),
            ("bars", "BNCH.BARS", "ohlcv-1m", BAR_SYMBOLS, bars_start, bar_days, BAR_CHUNK_DAYS)):
        lake = state / f"lake-{name}"
        shutil.rmtree(lake, ignore_errors=True)
        stage_env = dict(env, HIST_LAKE=str(lake), HIST_DATABASE_URL=fresh_database(server, f"bench_{name}"))
        print(f"{name}: running the pipeline ...", flush=True)
        job = job_args(dataset, schema, symbols, start, days, chunk_days)
        measures = stage_runs(stage_env, job)
        with psycopg.connect(stage_env["HIST_DATABASE_URL"]) as conn:
            table = "trades_data" if name == "trades" else "ohlcv_data"
            records = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        print(f"{name}: baselines ...", flush=True)
        raw = files(lake, "raw", "*.dbn.zst")
        standardized = files(lake, "standardized", "*.parquet")
        out_dir = state / f"baseline-{name}"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        to_parquet = python(
            "import sys; from databento import DBNStore\n"
            f"for i, p in enumerate({raw!r}): DBNStore.from_file(p).to_parquet({str(out_dir)!r} + f'/{{i}}.parquet')",
            env)
        copy_env = dict(env, HIST_DATABASE_URL=stage_env["HIST_DATABASE_URL"])
        plain_copy = python(PLAIN_COPY.format(table=table, files=standardized), copy_env)
        results[name] = {"records": records, "stages": measures, "to_parquet": to_parquet, "copy": plain_copy}
        if name == "trades":
            results["insert"] = python(ROW_INSERT.format(raw=raw[0], sample=INSERT_SAMPLE), copy_env)
    return results


PLAIN_COPY = """
import os, pgpq, psycopg, pyarrow as pa, pyarrow.parquet as pq
files = {files!r}
with psycopg.connect(os.environ["HIST_DATABASE_URL"]) as conn:
    conn.execute("TRUNCATE {table}")
    conn.commit()
    with conn.cursor() as cur:
        names = pq.ParquetFile(files[0]).schema_arrow.names + ["load_id"]
        cols = ", ".join('"' + n + '"' for n in names)
        with cur.copy(f"COPY {table} ({{cols}}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            encoder = None
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=500_000):
                    batch = batch.append_column("load_id", pa.array([0] * batch.num_rows, pa.int32()))
                    if encoder is None:
                        encoder = pgpq.ArrowToPostgresBinaryEncoder(batch.schema)
                        copy.write(encoder.write_header())
                    copy.write(encoder.write_batch(batch))
            copy.write(encoder.finish())
    conn.commit()
"""

ROW_INSERT = """
import os, time, psycopg
from databento import DBNStore
start = time.perf_counter()
df = DBNStore.from_file({raw!r}).to_df()
per_record_df = (time.perf_counter() - start) / len(df)
sample = df.head({sample}).reset_index()
with psycopg.connect(os.environ["HIST_DATABASE_URL"]) as conn:
    conn.execute("CREATE TEMP TABLE naive (ts_recv timestamptz, ts_event timestamptz, instrument_id bigint,"
                 " price double precision, size bigint, side text, action text, flags int, sequence bigint,"
                 " symbol text)")
    start = time.perf_counter()
    with conn.cursor() as cur:
        for row in sample.itertuples(index=False):
            cur.execute("INSERT INTO naive VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (row.ts_recv, row.ts_event, row.instrument_id, row.price, row.size, row.side, row.action,
                         row.flags, row.sequence, row.symbol))
    conn.commit()
    per_record_insert = (time.perf_counter() - start) / len(sample)
print(1 / (per_record_df + per_record_insert))
"""


TARGETS = {"transform": 2.0, "load": 0.8}
E2E_TARGET = 200_000
RSS_LIMIT_MIB = 1024


def render(results: dict[str, object], requested_trades: int) -> str:
    """One markdown table: every stage with its rate, peak RSS, baseline and PASS/FAIL where a target applies."""
    lines = ["| data | measure | records | seconds | records/s | peak RSS MiB | baseline records/s | ratio | target |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = []
    insert_rate = float(results["insert"].stdout.strip())  # type: ignore[attr-defined]
    peak = 0.0
    for name in ("trades", "bars"):
        data = results[name]
        records, stages = data["records"], data["stages"]  # type: ignore[index]
        baselines = {"transform": data["to_parquet"], "load": data["copy"]}  # type: ignore[index]
        for stage, measure in stages.items():
            peak = max(peak, measure.peak_rss_mib)
            rate = records / measure.seconds
            baseline = baselines.get(stage)
            cells = [name, stage, f"{records:,}", f"{measure.seconds:.1f}", f"{rate:,.0f}",
                     f"{measure.peak_rss_mib:,.0f}"]
            if baseline is None:
                cells += ["", "", ""]
            else:
                base_rate = records / baseline.seconds
                ratio = rate / base_rate
                verdict = "PASS" if ratio >= TARGETS[stage] else "FAIL"
                verdicts.append(verdict)
                cells += [f"{base_rate:,.0f}", f"{ratio:.2f}x", f"≥ {TARGETS[stage]}x {verdict}"]
            lines.append("| " + " | ".join(cells) + " |")
        total = sum(m.seconds for m in stages.values())
        e2e = records / total
        target = ""
        if name == "trades":
            verdict = "PASS" if e2e >= E2E_TARGET else "FAIL"
            verdicts.append(verdict)
            target = f"≥ {E2E_TARGET:,}/s {verdict}"
        lines.append(f"| {name} | end to end (gateway → TimescaleDB) | {records:,} | {total:.1f} | {e2e:,.0f} | "
                     f"{max(m.peak_rss_mib for m in stages.values()):,.0f} | {insert_rate:,.0f} | "
                     f"{e2e / insert_rate:,.0f}x | {target} |")
    rss_verdict = "PASS" if peak < RSS_LIMIT_MIB else "FAIL"
    verdicts.append(rss_verdict)
    trades = results["trades"]
    notes = [
        "",
        f"Peak RSS of any stage: {peak:,.0f} MiB (target < {RSS_LIMIT_MIB} MiB): {rss_verdict}.",
        f"Baselines, same data and database: transform = `DBNStore.to_parquet()` of the same raw files "
        f"({trades['to_parquet'].seconds:.1f}s for trades); load = one plain binary COPY of the same rows into the "  # type: ignore[index]
        f"same hypertable, no idempotency ({trades['copy'].seconds:.1f}s for trades); the common approach = "  # type: ignore[index]
        f"`DBNStore.to_df()` + row-wise INSERT on a {INSERT_SAMPLE:,}-row sample ({insert_rate:,.0f} records/s), "
        "the end-to-end ratio column.",
        f"Machine: {os.cpu_count()} cores. Trades requested: {requested_trades:,}. "
        f"Overall: {'PASS' if all(v == 'PASS' for v in verdicts) else 'FAIL'} "
        f"({verdicts.count('PASS')}/{len(verdicts)} targets met).",
    ]
    return "# Benchmarks (`make bench`)\n\n" + "\n".join(lines + notes) + "\n"


if __name__ == "__main__":
    main()
