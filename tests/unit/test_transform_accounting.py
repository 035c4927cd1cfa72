"""The transform's accounts (in = standardized + quarantined + filtered + duplicates) are counted term by
term, so a record lost where no term counts it fails the chunk before anything is committed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from lake.formats import ChunkSpec
from lake.paths import raw_key
from lake.storage import open_lake
from schemas.mappings import SchemaFilter
from stages.transform.rule_engine import CompiledTransform, RuleEngine
from stages.transform.runner import TransformSettings, run_transform
from tests.unit.test_transform_sql import DAY, ES, MAPPING, RULES, write
from tools.generate import day_records, empty


def extracted(tmp_path: Path, schema: str, records: np.ndarray, **settings: int) -> tuple[TransformSettings, str]:
    """A local lake holding `records` as one committed raw chunk of `schema`, and settings to transform it."""
    lake = open_lake(tmp_path / "lake")
    lake.ensure()
    source_schema = MAPPING.schema_mapping(schema).source_schema
    chunk = ChunkSpec(dataset="GLBX.MDP3", schema=schema, source_schema=source_schema, stype_in="raw_symbol",
                      symbols=("ESH4",), start=datetime(2024, 1, 2, tzinfo=UTC), end=datetime(2024, 1, 3, tzinfo=UTC))
    temp = write(tmp_path / "raw.dbn.zst", source_schema, records)
    raw = lake.commit(temp, "raw", len(records), lambda sha: raw_key(chunk, sha))
    lake.manifest().record("extract", chunk, files=[raw], records={"records": len(records)})
    return TransformSettings(lake, MAPPING, RULES, "test", **settings), chunk.chunk_id


def lake_files(settings: TransformSettings, area: str) -> list[Path]:
    return [p for p in (Path(settings.lake.url) / area).rglob("*") if p.is_file()]


def four_bars() -> np.ndarray:
    bars = empty("ohlcv-1m", 4)
    bars["instrument_id"] = ES
    bars["ts_event"] = DAY + np.arange(4) * 60 * 10**9
    bars["open"] = bars["high"] = bars["low"] = bars["close"] = 4_700_000_000_000
    bars["volume"] = 5
    return bars


def test_transform_given_select_that_loses_a_record_fails_the_chunk_before_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, chunk_id = extracted(tmp_path, "ohlcv-1m", four_bars())
    compile_ = RuleEngine.compile

    def losing(self: RuleEngine, *args: object, **kwargs: object) -> CompiledTransform:
        compiled = compile_(self, *args, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(compiled, rows=f"SELECT * FROM ({compiled.rows}) WHERE rec_seq <> 2")

    monkeypatch.setattr(RuleEngine, "compile", losing)

    report = run_transform(settings)

    assert report.failed == {chunk_id: "records do not add up: 4 in, but standardized + quarantined 3"
                                       " + filtered 0 + duplicates 0"}
    assert report.transformed == []
    assert lake_files(settings, "standardized") == [] and lake_files(settings, "quarantine") == []
    manifest = settings.lake.manifest()
    assert manifest.latest("transform") == {}
    assert manifest.latest("transform", "failed")[chunk_id].error == report.failed[chunk_id]


def test_transform_given_named_filter_counts_records_it_drops_including_a_null_verdict(tmp_path: Path) -> None:
    records = day_records(np.random.default_rng(3), "statistics", "GLBX.MDP3", "ESH4", date(2024, 1, 2), 10)
    kept = int(np.isin(records["stat_type"], [1, 3]).sum())
    subset = MAPPING.schemas["statistics.daily_summary"].model_copy(
        update={"filter": SchemaFilter(name="open_or_settle", keep_if="NULLIF(stat_type, 2) IN (1, 3)")})
    mapping = MAPPING.model_copy(update={"schemas": {**MAPPING.schemas, "statistics.daily_summary": subset}})
    settings, chunk_id = extracted(tmp_path, "statistics.daily_summary", records, batch_records=4)
    settings = dataclasses.replace(settings, mapping=mapping)

    report = run_transform(settings)

    assert report.failed == {} and report.transformed == [chunk_id]
    r = settings.lake.manifest().latest("transform")[chunk_id].records
    assert (r["in"], r["filtered"], r["filtered:open_or_settle"]) == (len(records), len(records) - kept,
                                                                        len(records) - kept)
    assert r["standardized"] + r["quarantined"] == kept > 0 and r["duplicates"] == 0
