"""Atomic file commits: a finished file in a scratch folder of the same filesystem is fsynced, renamed
into place and its folder fsynced. A reader sees either no file or the whole file, never a torn one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO

HASH_BLOCK = 1 << 20


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


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return sha256_stream(fh)


def sha256_stream(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while block := fh.read(HASH_BLOCK):
        digest.update(block)
    return digest.hexdigest()
