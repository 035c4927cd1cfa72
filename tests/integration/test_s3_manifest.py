"""The S3 manifest against moto's standalone server (the real S3 protocol on loopback): objects under
manifest/events/ that are not events, and an event that lands after its lease was taken over."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lake import object_manifest
from lake.formats import ChunkSpec, Stage
from lake.object_lake import ObjectLake
from lake.object_manifest import ObjectManifest, event_key
from lake.paths import MANIFEST_EVENTS
from stages.inspection.lake_views import lake_connection
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


def test_event_of_a_lapsed_holder_that_lands_after_the_takeover_is_refused(
        s3_lake: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HIST_LEASE_SECONDS", "1")
    holders = []
    for name in ("a", "b"):  # two workers: their own scratch (and flock), lease and manifest reader each
        monkeypatch.setenv("HIST_SCRATCH", str(tmp_path / name))
        holders.append(ObjectLake.from_url(s3_lake))
    a, b = holders
    lake = ObjectLake.from_url(s3_lake)  # a third process, reading
    monkeypatch.setattr(a.leases, "_renew", lambda held: None)  # A stalls: it never renews its lease
    monkeypatch.setattr(a.leases, "assert_held", lambda stage, chunk_id: None)  # A's check passed before

    with caplog.at_level(logging.WARNING, logger="lake.object_manifest"), \
            a.lock("transform", CHUNK.chunk_id) as a_locked:
        with b.lock("transform", CHUNK.chunk_id) as b_locked:  # once A's lease lapses, B takes it over
            fenced = lake.list_after(MANIFEST_EVENTS) == [event_key(1)] and not lake.manifest().written()
            late = a.manifest().record("transform", CHUNK)  # A's create, retried all this time, lands now
            undone = CHUNK.chunk_id not in b.manifest().latest("transform")  # what B checks before working
            ours = b.manifest().record("transform", CHUNK)
        reader = lake.manifest()
        newest = reader.latest("transform")
        view = lake_connection(lake).sql("SELECT event_id FROM manifest").fetchall()

    assert a_locked and b_locked and fenced and undone
    assert late.lease is not None and ours.lease is not None and late.lease < ours.lease
    assert newest[CHUNK.chunk_id].event_id == ours.event_id
    assert [e.event_id for e in reader.events()] == [ours.event_id]
    assert view == [(ours.event_id,)]
    assert (reader.refused, b.manifest().refused) == (1, 1)
    refusal = f"made under lease {late.lease}, which another worker took over (lease {ours.lease}) before it landed"
    assert [refusal in r.getMessage() for r in caplog.records] == [True, True]  # told once by each reader
