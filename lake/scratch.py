"""Per-chunk scratch folders for in-flight work (downloads, Parquet being written, DuckDB spills).

They are always on local disk (an object-store lake keeps them under HIST_SCRATCH). Only the holder
of a chunk's stage lock uses `tmp/<stage>/<chunk_id>/`, so whatever is there when the
lock is taken was left by a process that died (SIGKILL runs no cleanup) and is wiped first."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from lake.formats import Stage
from lake.locks import remove_unless_locked
from lake.storage import Lake


@contextlib.contextmanager
def chunk_scratch(lake: Lake, stage: Stage, chunk_id: str) -> Iterator[Path]:
    """A clean scratch folder for one chunk, removed afterwards. Call it holding the chunk's lock.
    The first one of a stage in a process (a run here, or a cluster worker) sweeps what dead
    processes left."""
    _sweep_once(lake, stage)
    folder = lake.tmp / stage / chunk_id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_swept: set[tuple[str, str]] = set()
_swept_lock = threading.Lock()


def _sweep_once(lake: Lake, stage: Stage) -> None:
    with _swept_lock:
        if (lake.url, stage) in _swept:
            return
        _swept.add((lake.url, stage))
    sweep(lake, stage)


def sweep(lake: Lake, stage: Stage) -> None:
    """Remove the scratch folders nobody holds: a process killed after its chunk's commit but before
    its own cleanup leaves one that no later lock holder would visit (the chunk is done)."""
    root = lake.tmp / stage
    if not root.is_dir():
        return
    for folder in root.iterdir():
        remove_unless_locked(lake.lock_file(stage, folder.name), folder)
