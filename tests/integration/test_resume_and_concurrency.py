"""Reruns, --force, and two instances of a stage at once: no duplicate work, no duplicate rows."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import psycopg

from tests.conftest import HIST, Gateway, HistRunner
from tools.generate import generate, instrument_id

DATASET = "XFRC.TEST"


def ingest_args(days: int = 2) -> list[str]:
    return ["--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4,NQH4", "--start-date", "2024-01-02",
            "--end-date", f"2024-01-0{2 + days}"]


def test_force_given_vendor_corrected_data_replaces_the_chunks_rows(hist: HistRunner, gateway: Gateway,
                                                                   database_url: str) -> None:
    from datetime import date

    generate(gateway.data, DATASET, ["ESH4", "NQH4"], date(2024, 1, 2), date(2024, 1, 4), ["trades"], seed=1,
             trades_per_day=300)
    hist("ingest", *ingest_args())
    generate(gateway.data, DATASET, ["ESH4", "NQH4"], date(2024, 1, 2), date(2024, 1, 4), ["trades"], seed=2,
             trades_per_day=200)  # the vendor republished both days

    unforced = hist("ingest", *ingest_args())
    forced = hist("ingest", *ingest_args(), "--force")

    assert "2 already in the lake" in unforced.stdout
    assert "load: 0 chunks loaded, 2 replaced" in forced.stdout
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT instrument_id, ts_recv_ns, (price * 1e9)::bigint FROM trades_data"
                            " ORDER BY ts_recv_ns, instrument_id").fetchall()
    from databento import DBNStore

    source = np.concatenate([DBNStore.from_file(gateway.data / DATASET / "trades" / f"2024-01-0{d}.dbn.zst")
                             .to_ndarray() for d in (2, 3)])
    assert len(rows) == len(source) == 800
    assert {r[0] for r in rows} == {instrument_id(DATASET, "ESH4"), instrument_id(DATASET, "NQH4")}
    assert sorted((int(s["instrument_id"]), int(s["ts_recv"]), int(s["price"])) for s in source) == sorted(rows)


def test_two_loaders_at_once_load_each_chunk_once(hist: HistRunner, database_url: str) -> None:
    hist("stage", "extract", "--dataset", "GLBX.MDP3", "--schema", "tbbo", "--symbols", "ESH4,NQH4,ESM4",
         "--start-date", "2024-01-02", "--end-date", "2024-01-04")
    hist("stage", "extract", "--dataset", "GLBX.MDP3", "--schema", "trades", "--symbols", "ESH4,NQH4,ESM4",
         "--start-date", "2024-01-02", "--end-date", "2024-01-04")
    hist("stage", "transform")

    loaders = [subprocess.Popen([str(HIST), "stage", "load"], env=hist.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in loaders]

    assert [p.returncode for p in loaders] == [0, 0], outputs
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM hist_chunk_loads").fetchone() == (4,)
        for table in ("trades_data", "tbbo_data"):
            total, distinct = conn.execute(
                f"SELECT count(*), count(DISTINCT (instrument_id, ts_recv_ns, sequence, dup_ordinal)) FROM {table}"
            ).fetchone()  # type: ignore[misc]
            assert total == distinct == 12_000


def test_two_extractors_at_once_request_each_chunk_once(hist: HistRunner, gateway: Gateway) -> None:
    gateway.faults({"kind": "slow", "delay": 0.5, "count": 4})
    args = ["stage", "extract", "--dataset", "GLBX.MDP3", "--schema", "trades", "--symbols", "ESH4",
            "--start-date", "2024-01-02", "--end-date", "2024-01-04"]
    extractors = [subprocess.Popen([str(HIST), *args], env=hist.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in extractors]

    assert [p.returncode for p in extractors] == [0, 0], outputs
    lines = [next(line for line in out.splitlines() if line.startswith("extract:")) for out, _ in outputs]
    told = [[int(n) for n in re.findall(r"(\d+) (?:chunks \(|already in the lake|left to the process)", line)]
            for line in lines]
    assert [sum(counts) for counts in told] == [2, 2], lines  # each process accounts for both chunks
    assert sum(counts[0] for counts in told) == 2, lines  # and each chunk was extracted by one of them
    assert sorted(r["params"]["start"][:10] for r in gateway.requests()) == ["2024-01-02", "2024-01-03"]  # type: ignore[index]
