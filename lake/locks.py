"""Per-chunk work locks, so two instances of a stage (a watcher beside a manual run, two loaders)
never work on the same chunk at once. flock locks die with their process, so a SIGKILL leaves none.

flock locks taken through separate open()s conflict within one process too, so every lock of a
process is taken under one mutex: a sweep that briefly holds a chunk's lock to clear its dead scratch
folder never makes a worker thread of the same process believe that another process holds the chunk
(which it would skip)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

_taking = threading.Lock()


def _take(path: Path) -> int | None:
    """An open descriptor holding the lock, or None if another holder has it (call under `_taking`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Yield True while holding the lock, or False at once if another process (or thread) holds it."""
    with _taking:
        fd = _take(path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def remove_unless_locked(path: Path, folder: Path) -> None:
    """Remove `folder` if nobody holds the lock at `path`, without any other thread of this process
    seeing that lock taken meanwhile."""
    with _taking:
        fd = _take(path)
        if fd is None:
            return
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
