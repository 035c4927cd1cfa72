"""Re-hash every file the manifest says was committed and report what is missing or changed."""

from __future__ import annotations

from dataclasses import dataclass

from lake.storage import Lake


@dataclass(frozen=True)
class VerifyProblem:
    path: str
    problem: str  # "missing" | "changed"
    chunk_id: str


def verify_lake(lake: Lake) -> tuple[int, list[VerifyProblem]]:
    """(number of files checked, problems). A file shared by several events is hashed once."""
    expected: dict[str, tuple[str, str]] = {}
    for event in lake.manifest().events():
        if event.status == "committed":
            for ref in event.files:
                expected[ref.path] = (ref.sha256, event.chunk_id)
    problems = []
    for relative, (sha256, chunk_id) in sorted(expected.items()):
        try:
            actual = lake.sha256(relative)
        except FileNotFoundError:
            problems.append(VerifyProblem(relative, "missing", chunk_id))
            continue
        if actual != sha256:
            problems.append(VerifyProblem(relative, "changed", chunk_id))
    return len(expected), problems
