"""Committing a stage's finished temporary file into the lake under its content-addressed name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lake.atomic import commit_file, sha256_file
from lake.formats import FileRef, FileRole
from lake.paths import LakePaths


def commit_into_lake(
    paths: LakePaths, temp: Path, role: FileRole, records: int, target_for: Callable[[str], Path]
) -> FileRef:
    """Hash `temp`, rename it to `target_for(sha256)` and describe it for the manifest."""
    sha256 = sha256_file(temp)
    target = target_for(sha256)
    size = temp.stat().st_size
    commit_file(temp, target)
    return FileRef(role=role, path=paths.relative(target), sha256=sha256, bytes=size, records=records)
