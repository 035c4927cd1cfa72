"""`Manifest.latest` answers from an index kept as events are read, so its cost does not grow with the
number of events in the lake (stage tasks call it several times per chunk)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from lake.formats import ChunkSpec, EventStatus, ManifestEvent, Stage
from lake.manifest import JsonlManifest
from lake.paths import MANIFEST_LOG

CHUNKS = [ChunkSpec(dataset="GLBX.MDP3", schema="trades", source_schema="trades", stype_in="raw_symbol",
                    symbols=(symbol,), start=datetime(2024, 1, 2, tzinfo=UTC), end=datetime(2024, 1, 3, tzinfo=UTC))
          for symbol in ("ESH4", "NQH4", "YMH4")]
KINDS: list[tuple[Stage, EventStatus]] = [("extract", "committed"), ("transform", "committed"), ("transform", "failed")]


def lines(count: int, start: int = 0) -> bytes:
    """`count` events over a few chunks, stages and statuses, as log lines (written at once: no fsync each)."""
    events = []
    for n in range(start, start + count):
        (stage, status), chunk = KINDS[n % len(KINDS)], CHUNKS[n // len(KINDS) % len(CHUNKS)]
        events.append(ManifestEvent(event_id=f"e{n}", stage=stage, status=status, chunk_id=chunk.chunk_id,
                                    chunk=chunk, created_at=datetime(2024, 1, 3, tzinfo=UTC)).model_dump_json())
    return "".join(f"{e}\n" for e in events).encode()


def calls(operation: Callable[[], object]) -> int:
    """How many Python and C functions `operation` calls: a measure of the work it does, without timing it."""
    made = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal made
        made += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        operation()
    finally:
        sys.setprofile(None)
    return made


def test_latest_costs_the_same_at_a_thousand_events_as_at_ten_thousand(tmp_path: Path) -> None:
    manifest = JsonlManifest(tmp_path / MANIFEST_LOG)
    manifest.path.parent.mkdir(parents=True)
    manifest.path.write_bytes(lines(1_000))
    manifest.latest("transform")  # reads the log
    small = calls(lambda: manifest.latest("transform"))
    with open(manifest.path, "ab") as fh:
        fh.write(lines(9_000, start=1_000))
    manifest.latest("transform")  # reads what is new
    large = calls(lambda: manifest.latest("transform"))

    assert large == small
    for stage, status in KINDS:
        newest = {e.chunk_id: e for e in manifest.events() if e.stage == stage and e.status == status}
        assert manifest.latest(stage, status) == newest
        assert list(manifest.latest(stage, status)) == list(newest)  # in log order, as before


def test_latest_given_a_replaced_log_forgets_the_old_one(tmp_path: Path) -> None:
    manifest = JsonlManifest(tmp_path / MANIFEST_LOG)
    manifest.path.parent.mkdir(parents=True)
    manifest.path.write_bytes(lines(30))
    assert len(manifest.latest("transform", "failed")) == len(CHUNKS)
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_bytes(lines(2))  # an extract and a committed transform: no failure any more
    os.replace(fresh, manifest.path)  # the lake was wiped and begun anew

    assert manifest.latest("transform", "failed") == {}
    assert [e.event_id for e in manifest.latest("transform").values()] == ["e1"]
    assert [e.event_id for e in manifest.events()] == ["e0", "e1"]


def test_newest_of_one_chunk_costs_the_same_with_a_hundred_chunks_as_with_ten_thousand(tmp_path: Path) -> None:
    def spread(count: int, start: int = 0) -> bytes:
        return "".join(ManifestEvent(
            event_id=f"e{n}", stage="transform", status="committed", chunk_id=f"chunk-{n}", chunk=CHUNKS[0],
            created_at=datetime(2024, 1, 3, tzinfo=UTC)).model_dump_json() + "\n" for n in range(start, start + count)
        ).encode()

    manifest = JsonlManifest(tmp_path / MANIFEST_LOG)
    manifest.path.parent.mkdir(parents=True)
    manifest.path.write_bytes(spread(100))
    manifest.newest("transform", "chunk-7")  # reads the log
    small = calls(lambda: manifest.newest("transform", "chunk-7"))
    with open(manifest.path, "ab") as fh:
        fh.write(spread(9_900, start=100))
    manifest.newest("transform", "chunk-7")
    large = calls(lambda: manifest.newest("transform", "chunk-7"))

    assert large == small, "a chunk task's check does not grow with the chunks in the lake"
    newest = manifest.newest("transform", "chunk-9999")
    assert newest is not None and newest.event_id == "e9999" and manifest.newest("extract", "chunk-1") is None
