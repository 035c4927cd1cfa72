"""Re-hash every file the manifest says was committed and report what is missing or changed."""

from __future__ import annotations

from dataclasses import dataclass

from lake.atomic import sha256_file
from lake.manifest import Manifest
from lake.paths import LakePaths


@dataclass(frozen=True)
class VerifyProblem:
    path: str
    problem: str  # "missing" | "changed"
    chunk_id: str


def verify_lake(paths: LakePaths) -> tuple[int, list[VerifyProblem]]:
    """(number of files checked, problems). A file shared by several events is hashed once."""
    expected: dict[str, tuple[str, str]] = {}
    for event in Manifest(paths).events():
        if event.status == "committed":
            for ref in event.files:
                expected[ref.path] = (ref.sha256, event.chunk_id)
    problems = []
    for relative, (sha256, chunk_id) in sorted(expected.items()):
        path = paths.absolute(relative)
        if not path.exists():
            problems.append(VerifyProblem(relative, "missing", chunk_id))
        elif sha256_file(path) != sha256:
            problems.append(VerifyProblem(relative, "changed", chunk_id))
    return len(expected), problems
