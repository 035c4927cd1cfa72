"""Every record accounted for (in = standardized + quarantined + filtered + duplicates), named
statistics subsets and dotted schema spellings, derived bars complete or visibly not, and chunks
re-derived from the lake after a rules change."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import yaml
from databento import DBNStore

from lake.formats import ManifestEvent
from lake.storage import open_lake
from tests.conftest import DATASET, Gateway, HistRunner
from tools.generate import instrument_id, metadata, write_dbn

WINDOW = ["--start-date", "2024-01-02", "--end-date", "2024-01-04"]
DAILY_SUMMARY = {1, 3, 4, 5, 6, 9, 11}
BROKEN = "XDRV.TEST"


def transforms(lake: Path) -> list[ManifestEvent]:
    return list(open_lake(lake).manifest().latest("transform").values())


def assert_accounted(lake: Path) -> None:
    """The invariant, for every chunk transformed in `lake`."""
    events = transforms(lake)
    assert events
    for event in events:
        r = event.records
        derived = "source_used" in r
        kept = r["source_used"] + r["source_quarantined"] if derived else r["standardized"] + r["quarantined"]
        assert r["in"] == kept + r["filtered"] + r["duplicates"], (event.chunk_id, r)


def source_stat_types(gateway: Gateway) -> list[int]:
    es = instrument_id(DATASET, "ESH4")
    return [int(r.stat_type) for day in ("2024-01-02", "2024-01-03")
            for r in DBNStore.from_file(gateway.data / DATASET / "statistics" / f"{day}.dbn.zst")
            if r.instrument_id == es]


def test_statistics_subset_given_named_filter_counts_what_it_leaves_out_and_plain_statistics_keeps_all(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    types = source_stat_types(gateway)
    kept = sum(1 for t in types if t in DAILY_SUMMARY)

    subset = hist("ingest", "--dataset", DATASET, "--schema", "statistics.daily_summary", "--symbols", "ESH4", *WINDOW)

    assert f"{len(types) - kept:,} filtered (daily_summary {len(types) - kept:,})" in subset.stdout
    assert_accounted(hist.lake)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM statistics_data").fetchone() == (kept,)
    gateway.admin("requests", [])

    everything = hist("ingest", "--dataset", DATASET, "--schema", "statistics", "--symbols", "ESH4", *WINDOW)

    assert gateway.requests() == [] and "1 reusing bytes already bought" in everything.stdout
    assert "0 filtered" in everything.stdout
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT stat_type, count(*) FROM statistics_data GROUP BY 1").fetchall()
    assert sum(n for _, n in stored) == len(types), "every stat type once: the subset's rows are not duplicated"
    assert {t for t, _ in stored} == set(types) and len(set(types)) > len(DAILY_SUMMARY)


def test_ingest_given_dotted_schema_spelling_plans_the_same_chunks(hist: HistRunner, gateway: Gateway) -> None:
    dotted = hist("ingest", "--dataset", DATASET, "--schema", "ohlcv.1m", "--symbols", "ESH4", *WINDOW)
    gateway.admin("requests", [])
    dashed = hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1m", "--symbols", "ESH4", *WINDOW)

    assert "extract: 1 chunks" in dotted.stdout and "1 already in the lake" in dashed.stdout
    assert gateway.requests() == []
    assert {e.chunk.schema_ for e in transforms(hist.lake)} == {"ohlcv-1m"}


def write_broken_minute(gateway: Gateway, field: str = "high") -> tuple[int, int]:
    """BROKEN: a day of ESH4 1m bars where one bar's high is below its low (or its open above its
    high). Returns the bar's ts_event and its 5-minute bucket."""
    bars = DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / "2024-01-02.dbn.zst").to_ndarray()
    bars = bars[bars["instrument_id"] == instrument_id(DATASET, "ESH4")][:60].copy()
    bars[field][7] = bars["low"][7] - 250_000_000 if field == "high" else bars["high"][7] + 250_000_000
    mappings = {"ESH4": [{"d0": "2024-01-02", "d1": "2024-01-03", "s": str(instrument_id(DATASET, "ESH4"))}]}
    write_dbn(gateway.data / BROKEN / "ohlcv-1m" / "2024-01-02.dbn.zst",
              metadata(BROKEN, "ohlcv-1m", 0, 0, ["ESH4"], mappings), bars)
    (gateway.data / BROKEN / "symbology.json").write_text(json.dumps({"raw_symbol": mappings}))
    ts = int(bars["ts_event"][7])
    return ts, ts - ts % (300 * 10**9)


def test_derived_bar_given_a_quarantined_minute_goes_to_quarantine_naming_it(
        hist: HistRunner, gateway: Gateway, database_url: str) -> None:
    minute, bucket = write_broken_minute(gateway)

    hist("ingest", "--dataset", BROKEN, "--schema", "ohlcv-5m", "--symbols", "ESH4", "--start-date", "2024-01-02",
         "--end-date", "2024-01-03")

    shown = hist("lake", "query", "SELECT interval, rule, detail, ts_event_ns FROM quarantine_ohlcv_data"
                 " ORDER BY interval", "-f", "csv").stdout.splitlines()[1:]
    assert shown[0].split(",")[:2] == ['"1m"', '"ohlcv_high_ge_low"'] and shown[0].endswith(str(minute))
    assert shown[1].split(",")[:2] == ['"5m"', '"derived_bar_complete"'] and shown[1].endswith(str(bucket))
    assert "quarantined source bars: 2024-01-02T" in shown[1]
    with psycopg.connect(database_url) as conn:
        buckets = {r[0] for r in conn.execute("SELECT ts_event_ns FROM ohlcv_data WHERE interval = '5m'")}
    assert bucket not in buckets and len(buckets) > 5, "no bar lands short; the other buckets land"
    assert_accounted(hist.lake)
    (event,) = transforms(hist.lake)
    assert event.records["source_quarantined"] >= 1 and event.records["in"] == 60


def test_rederive_given_rules_change_transforms_stale_chunks_from_the_lake_and_replaces_their_rows(
        hist: HistRunner, gateway: Gateway, database_url: str, test_config: Path, tmp_path: Path) -> None:
    write_broken_minute(gateway, "open")
    hist("ingest", "--dataset", BROKEN, "--schema", "ohlcv-1m", "--symbols", "ESH4", "--start-date", "2024-01-02",
         "--end-date", "2024-01-03")
    assert stale_count(hist) == 0
    # the user decides this venue's bars may open outside their range: the rule becomes a warning
    config = yaml.safe_load(test_config.read_text())
    rules = yaml.safe_load(Path(config["validation_schema_paths"][0]).read_text())
    next(r for r in rules["rules"]["ohlcv"] if r["name"] == "ohlcv_open_close_within_range")["severity"] = "warn"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    config["validation_schema_paths"] = [str(tmp_path / "rules.yaml")]
    test_config.write_text(yaml.safe_dump(config))
    assert stale_count(hist) == 1
    gateway.admin("requests", [])

    result = hist("rederive")

    assert "rederive: 1 stale chunks" in result.stdout and "load: 0 chunks loaded, 1 replaced" in result.stdout
    assert gateway.requests() == [], "re-derived from the raw bytes in the lake"
    with psycopg.connect(database_url) as conn:
        counts = conn.execute("SELECT count(*), count(*) FILTER (WHERE open > high) FROM ohlcv_data").fetchone()
    assert counts == (60, 1)
    assert stale_count(hist) == 0


def stale_count(hist: HistRunner) -> int:
    """The transform row's `stale` column of `hist lake status`."""
    rows = [json.loads(line) for line in hist("lake", "status", "-f", "json").stdout.splitlines()]
    return int(next(r["stale"] for r in rows if r["stage"] == "transform"))
