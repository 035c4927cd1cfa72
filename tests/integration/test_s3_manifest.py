"""The S3 manifest against moto's standalone server (the real S3 protocol on loopback): what a reader
and a writer do with objects under manifest/events/ that are not events."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lake import object_manifest
from lake.formats import ChunkSpec, Stage
from lake.object_lake import ObjectLake
from lake.object_manifest import ObjectManifest
from lake.paths import MANIFEST_EVENTS
from tools.local_cluster import S3Endpoint

CHUNK = ChunkSpec(dataset="XMAN.TEST", schema="trades", source_schema="trades", stype_in="raw_symbol",
                  symbols=("ESH4",), start=datetime(2024, 3, 4, tzinfo=UTC), end=datetime(2024, 3, 5, tzinfo=UTC))


@pytest.fixture
def s3_lake(moto_s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The url of a lake in a new bucket, with this process pointed straight at moto."""
    for key, value in {**moto_s3.env, "AWS_ENDPOINT_URL": moto_s3.url, "HIST_SCRATCH": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    yield f"s3://{moto_s3.new_bucket('hist-manifest')}/lake"


@pytest.mark.parametrize("stray", ["000000000003.json.bak", "zzz.txt"])
def test_stray_object_under_the_events_never_stops_reads_or_appends(
        s3_lake: str, stray: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(object_manifest, "MAX_ATTEMPTS", 3)  # a wedged append fails in seconds, not minutes
    lake = ObjectLake.from_url(s3_lake)
    writer, reader = ObjectManifest(lake), ObjectManifest(lake)
    stages: tuple[Stage, ...] = ("extract", "transform", "extract")
    for stage in stages:
        writer.record(stage, CHUNK)
    lake.create(f"{MANIFEST_EVENTS}/{stray}", b"a copy someone left here")  # sorts after the last event

    with caplog.at_level(logging.WARNING, logger="lake.object_manifest"):
        before = [e.stage for e in reader.events()]
        reader.record("transform", CHUNK)  # the reader appends after the stray
        writer.record("load", CHUNK)  # so does a writer that has not read it
        after = [e.stage for e in reader.events()]

    assert before == ["extract", "transform", "extract"]
    assert after == ["extract", "transform", "extract", "transform", "load"]
    assert [k for k in lake.list_after(MANIFEST_EVENTS) if k != stray] == [f"{n:012d}.json" for n in range(1, 6)]
    warned = f"manifest object {reader.describe()}/{stray} is not an event; skipped"
    assert [r.getMessage() for r in caplog.records] == [warned, warned]  # once by each reader, not every read
