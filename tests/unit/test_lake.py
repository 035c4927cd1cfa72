"""The lake: deterministic chunk ids, the manifest log's tolerance of torn lines, atomic commits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from lake import locks
from lake.atomic import commit_file
from lake.formats import ChunkSpec
from lake.locks import try_lock
from lake.manifest import JsonlManifest
from lake.paths import MANIFEST_LOG
from lake.scratch import chunk_scratch, sweep
from lake.storage import open_lake


def chunk(symbols: tuple[str, ...] = ("ESH4", "NQH4"), day: int = 2) -> ChunkSpec:
    return ChunkSpec(dataset="GLBX.MDP3", schema="ohlcv-1m", source_schema="ohlcv-1m", stype_in="raw_symbol",
                     symbols=symbols, start=datetime(2024, 1, day, tzinfo=UTC),
                     end=datetime(2024, 1, day + 1, tzinfo=UTC))


def test_chunk_id_given_same_request_in_any_symbol_order_is_equal() -> None:
    assert chunk(("ESH4", "NQH4")).chunk_id == chunk(("NQH4", "ESH4")).chunk_id
    assert chunk().chunk_id != chunk(day=3).chunk_id
    assert chunk().chunk_id.startswith("ohlcv-1m-20240102-20240103-")


def test_manifest_given_torn_last_line_reads_the_rest_and_next_append_seals_it(tmp_path: Path) -> None:
    manifest = JsonlManifest(tmp_path / MANIFEST_LOG)
    manifest.record("extract", chunk(), records={"records": 1})
    with open(manifest.path, "ab") as fh:
        fh.write(b'{"format_version": 1, "event_id": "torn", "stage": "ext')

    assert [e.chunk_id for e in manifest.events()] == [chunk().chunk_id]
    manifest.record("extract", chunk(day=3))

    assert [e.chunk_id for e in manifest.events()] == [chunk().chunk_id, chunk(day=3).chunk_id]
    assert manifest.path.read_bytes().count(b"\n") == 3


def test_manifest_given_torn_line_is_readable_with_plain_duckdb(tmp_path: Path) -> None:
    manifest = JsonlManifest(tmp_path / MANIFEST_LOG)
    manifest.record("extract", chunk())
    with open(manifest.path, "ab") as fh:
        fh.write(b'{"torn": ')
    manifest.record("transform", chunk())

    rows = duckdb.sql(f"SELECT stage, chunk_id FROM read_json('{manifest.path}', format='newline_delimited',"
                      " ignore_errors=true) WHERE stage IS NOT NULL ORDER BY created_at").fetchall()

    assert rows == [("extract", chunk().chunk_id), ("transform", chunk().chunk_id)]


def test_chunk_scratch_given_error_leaves_no_file(tmp_path: Path) -> None:
    lake = open_lake(tmp_path)
    with pytest.raises(RuntimeError), chunk_scratch(lake, "extract", "c1") as scratch:
        (scratch / "download.dbn.zst").write_bytes(b"half")
        raise RuntimeError("crash")

    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_chunk_scratch_given_files_of_a_killed_process_wipes_them(tmp_path: Path) -> None:
    lake = open_lake(tmp_path)
    stale = lake.tmp / "transform" / "c1" / "standardized.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by SIGKILL")

    with chunk_scratch(lake, "transform", "c1") as scratch:
        assert list(scratch.iterdir()) == []
        (scratch / "x").write_bytes(b"new")
        commit_file(scratch / "x", tmp_path / "standardized" / "x")

    files = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert [f for f in files if not f.startswith("locks/")] == ["standardized/x"]


def test_sweep_given_folders_left_after_a_commit_removes_those_nobody_holds(tmp_path: Path) -> None:
    lake = open_lake(tmp_path)
    for chunk_id in ("done", "busy"):
        (lake.tmp / "transform" / chunk_id).mkdir(parents=True)
        (lake.tmp / "transform" / chunk_id / "quarantine.parquet").write_bytes(b"left by a SIGKILL")

    with try_lock(lake.lock_file("transform", "busy")) as locked:
        assert locked
        sweep(lake, "transform")

    assert sorted(p.name for p in (lake.tmp / "transform").iterdir()) == ["busy"]


def test_sweep_in_one_thread_never_makes_another_thread_skip_its_chunk(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's first chunk sweeps dead scratch folders while its other worker threads take their chunks'
    locks: a chunk whose folder is being swept must not look held by another process (it was skipped,
    and a resumed ingest lost that day)."""
    lake = open_lake(tmp_path)
    (lake.tmp / "extract" / "left-by-a-kill").mkdir(parents=True)
    sweeping, rmtree = threading.Event(), shutil.rmtree

    def slow_rmtree(path: Path, ignore_errors: bool = False) -> None:
        sweeping.set()
        time.sleep(0.3)  # the sweep holds the chunk's lock while it removes the folder
        rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(locks.shutil, "rmtree", slow_rmtree)
    sweeper = threading.Thread(target=sweep, args=(lake, "extract"))
    sweeper.start()
    assert sweeping.wait(5)
    with try_lock(lake.lock_file("extract", "left-by-a-kill")) as locked:
        held_here = locked
    sweeper.join()

    assert held_here
    assert not (lake.tmp / "extract" / "left-by-a-kill").exists()


def test_manifest_given_concurrent_writers_keeps_every_line(tmp_path: Path) -> None:
    script = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path;"
        "from lake.storage import open_lake; from lake.formats import ChunkSpec\n"
        "m = open_lake(Path(sys.argv[1])).manifest()\n"
        "for i in range(200):\n"
        "    m.record('extract', ChunkSpec(dataset='A.B', schema='trades', source_schema='trades',"
        " stype_in='raw_symbol', symbols=(sys.argv[2],), start=datetime(2024,1,1,tzinfo=UTC),"
        " end=datetime(2024,1,2,tzinfo=UTC)))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"S{i}"], cwd=Path(__file__).parents[2])
             for i in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]

    assert len(list(open_lake(tmp_path).manifest().events())) == 600
