"""Atomic file commits: write to a temporary name beside the target, fsync, rename, fsync the folder.
A reader therefore sees either no file or the whole file, never a torn one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

HASH_BLOCK = 1 << 20


def temp_path_for(target: Path) -> Path:
    """A unique temporary sibling of `target`; names starting with '.tmp-' are never read as data."""
    return target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temp: Path, target: Path) -> None:
    """Make a finished temporary file visible under its final name, durably."""
    with open(temp, "rb+") as fh:
        os.fsync(fh.fileno())
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is committed as `target`, on error removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(target)
    try:
        yield temp
        commit_file(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
