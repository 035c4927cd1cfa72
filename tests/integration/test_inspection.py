"""Looking into the lake and the database: lake status and query, quarantine ls/show/reprocess (on a
local lake and on S3), hist query, JSON logs, and help for every command."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import psycopg
import pyarrow.parquet as pq
import yaml
from databento import DBNStore

from tests.conftest import DATASET, Gateway, HistRunner
from tools.generate import instrument_id, metadata, write_dbn

WINDOW = ["--start-date", "2024-01-02", "--end-date", "2024-01-04"]


def test_lake_status_and_query_show_each_stage(any_lake: HistRunner, database_url: str) -> None:
    hist = any_lake
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1h", "--symbols", "ESH4,NQH4", *WINDOW)

    status = hist("lake", "status").stdout
    manifest = hist("lake", "query", "SELECT stage, count(*) AS n FROM manifest GROUP BY 1 ORDER BY 1",
                    "--format", "csv").stdout
    per_symbol = hist("lake", "query", "SELECT symbol, count(*) AS bars FROM ohlcv_data GROUP BY 1 ORDER BY 1",
                      "--format", "json").stdout

    stages = {row[0]: row for row in csv.reader(io.StringIO(status))}  # CSV in a pipe, by default
    assert stages["extract"][1:3] == ["1", "92"] and stages["load"][1:3] == ["1", "92"]
    assert stages["transform"][1:7] == ["1", "92", "92", "0", "0", "0"], "in = standardized + quarantined + ..."
    assert list(csv.reader(io.StringIO(manifest))) == [["stage", "n"], ["extract", "1"], ["transform", "1"]]
    assert [json.loads(line) for line in per_symbol.splitlines()] == [{"symbol": "ESH4", "bars": 46},
                                                                      {"symbol": "NQH4", "bars": 46}]
    raw = hist("lake", "query", "SELECT count(*) AS files, sum(records) AS records FROM raw_files", "-f", "csv")
    assert raw.stdout.splitlines()[1] == "1,92"


def test_lake_query_given_bad_sql_says_why(hist: HistRunner) -> None:
    hist("stage", "extract", "--dataset", DATASET, "--schema", "ohlcv-1d", "--symbols", "ESH4", *WINDOW)

    result = hist("lake", "query", "SELECT nope FROM manifest", check=False)

    assert result.returncode == 1 and result.stderr.startswith("error: query failed: Binder Error")


RULE = "ohlcv_open_close_within_range"


def write_bad_bars(gateway: Gateway) -> int:
    """XQTN.TEST: a day of ESH4 1m bars where three open above their high."""
    bars = DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / "2024-01-02.dbn.zst").to_ndarray()
    bars = bars[bars["instrument_id"] == instrument_id(DATASET, "ESH4")][:50].copy()
    bars["open"][[5, 6, 7]] = bars["high"][[5, 6, 7]] + 250_000_000
    mappings = {"ESH4": [{"d0": "2024-01-02", "d1": "2024-01-03", "s": str(instrument_id(DATASET, "ESH4"))}]}
    write_dbn(gateway.data / "XQTN.TEST" / "ohlcv-1m" / "2024-01-02.dbn.zst",
              metadata("XQTN.TEST", "ohlcv-1m", 0, 0, ["ESH4"], mappings), bars)
    (gateway.data / "XQTN.TEST" / "symbology.json").write_text(json.dumps({"raw_symbol": mappings}))
    return len(bars)


def test_quarantine_ls_show_and_reprocess_after_a_rule_change(any_lake: HistRunner, gateway: Gateway,
                                                              database_url: str, test_config: Path,
                                                              tmp_path: Path) -> None:
    hist = any_lake
    total = write_bad_bars(gateway)
    hist("ingest", "--dataset", "XQTN.TEST", "--schema", "ohlcv-1m", "--symbols", "ESH4", "--start-date",
         "2024-01-02", "--end-date", "2024-01-03")

    listing = hist("quarantine", "ls", "-f", "csv").stdout
    shown = hist("quarantine", "show", "--rule", RULE, "-f", "json").stdout
    rows = [json.loads(line) for line in shown.splitlines()]
    assert list(csv.reader(io.StringIO(listing)))[1][:2] == ["ohlcv_data", RULE]
    assert list(csv.reader(io.StringIO(listing)))[1][3] == "3"
    assert [r["rec_seq"] for r in rows] == [5, 6, 7] and all(float(r["open"]) > float(r["high"]) for r in rows)

    # the user decides this venue's opens may lie outside the bar: the rule becomes a warning, no code change
    rules = yaml.safe_load(Path(yaml.safe_load(test_config.read_text())["validation_schema_paths"][0]).read_text())
    next(r for r in rules["rules"]["ohlcv"] if r["name"] == RULE)["severity"] = "warn"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = yaml.safe_load(test_config.read_text())
    config["validation_schema_paths"] = [str(tmp_path / "rules.yaml")]
    test_config.write_text(yaml.safe_dump(config))

    result = hist("quarantine", "reprocess", "--rule", RULE)

    assert "reprocessed 1 chunks" in result.stdout and "load: 1 chunks replaced" in result.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE open > high) FROM ohlcv_data").fetchone() == (
            total, 3)
    assert hist("quarantine", "ls", "-f", "csv").stdout.strip() == "\"table_name\",\"rule\",\"chunk_id\",\"rows\""
    versions = hist("lake", "query", "SELECT DISTINCT rules_version FROM manifest WHERE stage = 'transform'",
                    "-f", "csv").stdout.splitlines()[1:]
    assert len(versions) == 2, "the manifest records the rules version of each transform"


def test_query_given_interval_resamples_with_time_bucket(hist: HistRunner, gateway: Gateway, tmp_path: Path) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1m", "--symbols", "ESH4", *WINDOW)

    hourly = hist("query", "--schema", "ohlcv-1m", "--symbols", "ESH4", "--start-date", "2024-01-02",
                  "--end-date", "2024-01-03", "--interval", "1h", "-f", "json").stdout
    hist("query", "--schema", "ohlcv-1m", "--symbols", "ESH4", *WINDOW, "-f", "parquet", "-o", str(tmp_path / "q.pq"))

    bars = [json.loads(line) for line in hourly.splitlines()]
    source = DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / "2024-01-02.dbn.zst").to_ndarray()
    source = source[source["instrument_id"] == instrument_id(DATASET, "ESH4")]
    first_hour = source[source["ts_event"] < source["ts_event"][0] + 3600 * 10**9]
    assert len(bars) == 23, "the 21:00 halt hour has no bar"
    assert int(bars[0]["volume"]) == int(first_hour["volume"].sum())
    assert float(bars[0]["high"]) * 1e9 == float(first_hour["high"].max())
    both_days = sum(int(np.sum(DBNStore.from_file(gateway.data / DATASET / "ohlcv-1m" / f"{day}.dbn.zst")
                               .to_ndarray()["instrument_id"] == instrument_id(DATASET, "ESH4")))
                    for day in ("2024-01-02", "2024-01-03"))
    assert pq.read_table(tmp_path / "q.pq").num_rows == both_days


def test_log_format_json_emits_every_stages_lifecycle_events_with_chunk_ids(hist: HistRunner, gateway: Gateway) -> None:
    gateway.faults({"kind": "429", "count": 1, "retry_after": 0, "match": {"start": "2024-01-02"}},
                   {"kind": "500", "status": 422, "count": 1, "match": {"start": "2024-01-03"}})
    result = hist("--log-format", "json", "ingest", "--dataset", DATASET, "--schema", "trades", "--symbols",
                  "ESH4", *WINDOW, check=False)

    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert result.returncode == 1 and len(events) > 10
    kinds = {(e.get("stage"), e.get("event")) for e in events}
    for stage in ("extract", "transform", "load"):
        assert {(stage, "stage_started"), (stage, "chunk_committed"), (stage, "stage_finished")} <= kinds, stage
    assert {("extract", "retried"), ("extract", "chunk_failed")} <= kinds
    assert all(e["chunk_id"].startswith("trades-2024010") for e in events
               if e.get("event") in ("chunk_committed", "chunk_failed", "retried"))
    finished = {e["stage"]: e for e in events if e.get("event") == "stage_finished"}
    assert finished["extract"]["chunks"] == 1 and finished["extract"]["failed"] == 1
    assert sum(e["rows"] for e in events if e.get("event") == "stage_finished" and e["stage"] == "load") > 0


def test_quiet_prints_only_results(hist: HistRunner) -> None:
    result = hist("--quiet", "stage", "extract", "--dataset", DATASET, "--schema", "ohlcv-1d", "--symbols", "ESH4",
                  *WINDOW)

    assert result.stdout == "" and result.stderr == ""


def test_every_command_has_help_with_an_example(hist: HistRunner) -> None:
    commands = [["ingest"], ["watch"], ["query"], ["rederive"], ["doctor"], ["stage", "extract"],
                ["stage", "transform"], ["stage", "load"], ["db", "init"], ["lake", "status"], ["lake", "verify"],
                ["lake", "query"], ["quarantine", "ls"], ["quarantine", "show"], ["quarantine", "reprocess"]]
    for command in commands:
        text = " ".join(hist(*command, "--help").stdout.split())
        assert "Example:" in text and " hist " in text.split("Example:")[1], command
        assert "<bool>" not in text, f"a flag shown as taking a value: {command}"
    assert "EXCLUSIVE" in hist("ingest", "--help").stdout
