"""Measuring for tools/bench.py: run a command with its wall time and peak RSS, fresh databases, the replay
gateway's request log, and the baselines' code (run as their own processes, like `hist`).

Peak RSS is the child's VmHWM (/proc/<pid>/status), sampled until it exits: ru_maxrss from wait4 would
count the pages a child inherits at fork from the bench process, not the child's own high-water mark."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg

HIST = Path(sys.executable).parent / "hist"
SAMPLE_SECONDS = 0.02


@dataclass
class Measure:
    seconds: float
    peak_rss_mib: float
    stdout: str = ""
    stderr: str = ""


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run(args: list[str], env: dict[str, str]) -> Measure:
    """Run a command to completion: wall time and the last VmHWM sampled before it exited. Output goes to
    files, not pipes, so a chatty child never blocks on a full pipe while we sample it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        peak_kib = 0
        while process.poll() is None:
            # a zombie has no VmHWM line: keep the last value read while it ran
            peak_kib = max(peak_kib, _vm_hwm_kib(process.pid) or 0)
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:5])} failed ({process.returncode}):\n{stdout}\n{stderr[-3000:]}")
    return Measure(seconds, peak_kib / 1024, stdout, stderr)


def python(code: str, env: dict[str, str]) -> Measure:
    return run([sys.executable, "-c", code], env)


def hist(env: dict[str, str], *args: str, quiet: bool = True) -> Measure:
    return run([str(HIST), *(["--quiet"] if quiet else []), *args], env)


def fresh_database(server_dsn: str, name: str, env: dict[str, str]) -> str:
    """An empty database with hist's tables (`hist db init`); its DSN."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = server_dsn.rsplit("/", 1)[0] + f"/{name}"
    hist(dict(env, HIST_DATABASE_URL=dsn), "db", "init")
    return dsn


def drop_databases(server_dsn: str, names: list[str]) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def gateway_requests(env: dict[str, str], clear: bool = False) -> list[dict[str, object]]:
    """The replay gateway's request log (POST clears it)."""
    context = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    request = urllib.request.Request(f"https://{env['DATABENTO_GATEWAY']}/_admin/requests",
                                     data=b"" if clear else None, method="POST" if clear else "GET")
    with urllib.request.urlopen(request, context=context) as reply:
        return list(json.loads(reply.read()))


# One plain binary COPY of the standardized Parquet files on disk into the hypertable: no idempotency
# ledger, no dedup, one stream. Prints the rows copied.
PLAIN_COPY = """
import os, pgpq, psycopg, pyarrow as pa, pyarrow.parquet as pq
files = {files!r}
rows = 0
with psycopg.connect(os.environ["HIST_DATABASE_URL"]) as conn:
    with conn.cursor() as cur:
        names = pq.ParquetFile(files[0]).schema_arrow.names + ["load_id"]
        cols = ", ".join('"' + n + '"' for n in names)
        with cur.copy(f"COPY {table} ({{cols}}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            encoder = None
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=250_000):
                    batch = batch.append_column("load_id", pa.array([0] * batch.num_rows, pa.int32()))
                    if encoder is None:
                        encoder = pgpq.ArrowToPostgresBinaryEncoder(batch.schema)
                        copy.write(encoder.write_header())
                    copy.write(encoder.write_batch(batch))
                    rows += batch.num_rows
            copy.write(encoder.finish())
    conn.commit()
print(rows)
"""

# The hand-written path: get_range through the official client, to_df(), to_csv(), CSV COPY into a plain
# table with the DataFrame's columns. Prints the rows copied.
HANDWRITTEN = """
import io, os, databento as db, psycopg
client = db.Historical(os.environ["DATABENTO_API_KEY"], gateway=os.environ["DATABENTO_GATEWAY"])
store = client.timeseries.get_range(dataset={dataset!r}, schema="trades", symbols={symbols!r}, start={start!r},
                                    end={end!r})
df = store.to_df().reset_index()
text = io.StringIO()
df.to_csv(text, index=False, header=False)
with psycopg.connect(os.environ["HIST_DATABASE_URL"]) as conn:
    conn.execute("CREATE TABLE naive_trades (ts_recv timestamptz, ts_event timestamptz, rtype int,"
                 " publisher_id int, instrument_id bigint, action text, side text, depth int,"
                 " price double precision, size bigint, flags int, ts_in_delta int, sequence bigint,"
                 " symbol text)")
    with conn.cursor().copy("COPY naive_trades (" + ", ".join(df.columns) + ") FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(text.getvalue())
print(len(df))
"""

TO_PARQUET = """
from databento import DBNStore
for i, path in enumerate({raw!r}):
    DBNStore.from_file(path).to_parquet({out!r} + f"/{{i}}.parquet")
"""
