"""The markdown report of tools/bench.py: one side-by-side table with PASS/FAIL per target, and notes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tools.bench_measure import Measure

STAGE_TARGETS = {"transform": 2.0, "load": 0.8}  # per stage: x to_parquet, x plain COPY
COPY_TARGET, HANDWRITTEN_TARGET, RSS_LIMIT_MIB, DAILY_REQUESTS = 0.9, 3.0, 512, 12
HEADER = ["| case | measure | records | seconds | records/s | peak RSS MiB | baseline | baseline records/s | ratio "
          "| target |", "|---|---|---:|---:|---:|---:|---|---:|---:|---|"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def profile(measure: Measure) -> str:
    """When each stage of an overlapped `hist ingest` committed its chunks, from its JSON lifecycle log:
    seconds after the run's first log line (process start-up before it is not counted)."""
    events = [json.loads(line) for line in measure.stderr.splitlines() if line.startswith("{")]
    if not events:
        return "no log"
    first = datetime.fromisoformat(events[0]["time"])
    spans = []
    for stage in ("extract", "transform", "load"):
        times = [(datetime.fromisoformat(e["time"]) - first).total_seconds() for e in events
                 if e.get("stage") == stage and e.get("event") == "chunk_committed"]
        if times:
            spans.append(f"{stage} {len(times)} chunk(s) committed at {times[0]:.1f} to {times[-1]:.1f} s")
    start_up = measure.seconds - (datetime.fromisoformat(events[-1]["time"]) - first).total_seconds()
    return "; ".join(spans) + f" (start-up and exit {start_up:.1f} s)"


class Table:
    def __init__(self) -> None:
        self.lines = list(HEADER)
        self.verdicts: list[tuple[str, bool]] = []

    def row(self, case: str, what: str, records: int | None, measure: Measure | None, baseline: str = "",
            base_rate: float | None = None, at_least: float | None = None, target: str = "",
            ok: bool | None = None, label: str = "") -> None:
        """One line; with at_least, the target is ratio ≥ at_least; label names a target in the summary."""
        rate = records / measure.seconds if records and measure else None
        ratio = rate / base_rate if rate and base_rate else None
        if at_least is not None and ratio is not None:
            target, ok = f"≥ {at_least:.1f}x", ratio >= at_least
        if ok is not None:
            self.verdicts.append((label or what, ok))
            target = f"{target} {verdict(ok)}"
        cells = [case, what, f"{records:,}" if records else "", f"{measure.seconds:.1f}" if measure else "",
                 f"{rate:,.0f}" if rate else "", f"{measure.peak_rss_mib:,.0f}" if measure else "",
                 baseline, f"{base_rate:,.0f}" if base_rate else "", f"{ratio:.2f}x" if ratio else "", target]
        self.lines.append("| " + " | ".join(cells) + " |")

    def stages(self, case: str, data: dict[str, Any], short: str) -> None:
        records, stages = data["records"], data["stages"]
        self.row(case, "`hist stage extract`", records, stages["extract"])
        self.row(case, "`hist stage transform`", records, stages["transform"], "`DBNStore.to_parquet()`",
                 records / data["to_parquet"].seconds, STAGE_TARGETS["transform"],
                 label=f"{short} transform vs to_parquet")
        self.row(case, "`hist stage load`", records, stages["load"], "plain binary COPY",
                 data["copied"] / data["copy"].seconds, STAGE_TARGETS["load"], label=f"{short} load vs plain COPY")


def render(r: dict[str, Any]) -> str:
    table = Table()
    trades, window, hand = r["trades"], r["window"], r["handwritten"]
    case = f"{r['window_trades'] / 1e6:g} M trades, 1 window"
    table.stages(case, trades, "trades")
    copy_rate = trades["copied"] / trades["copy"].seconds
    hand_rows = int(hand.stdout.split()[-1])
    hand_rate = hand_rows / hand.seconds
    ingest = window["measure"]
    table.row(case, "**`hist ingest`** gateway → TimescaleDB", window["records"], ingest,
              "plain binary COPY, same rows and hypertable", copy_rate, COPY_TARGET,
              label="ingest vs plain COPY")
    table.row(case, "**`hist ingest`** (same run)", window["records"], ingest,
              f"hand-written get_range → to_df → CSV COPY ({hand_rows:,} rows)", hand_rate,
              HANDWRITTEN_TARGET, label="ingest vs hand-written")
    table.row(case, "peak RSS of `hist ingest`", None, ingest, target=f"≤ {RSS_LIMIT_MIB} MiB",
              ok=ingest.peak_rss_mib <= RSS_LIMIT_MIB, label="ingest peak RSS")
    bars, batch, daily = r["bars"], r["batch"], r["daily"]
    bars_case = f"{r['bar_days']} days of 1-min bars, 10 symbols"
    table.stages(bars_case, bars, "bars")
    stream_seconds = sum(m.seconds for m in bars["stages"].values())
    table.row(bars_case, "`hist ingest --via batch`", batch["records"], batch["measure"],
              "the three stages above, streamed", bars["records"] / stream_seconds,
              target="same rows as streamed", ok=batch["records"] == bars["records"], label="batch rows")
    table.row("10 years of daily bars, 5 symbols", "`hist ingest`", daily["records"], daily["measure"],
              target=f"{daily['requests']} get_range requests ≤ {DAILY_REQUESTS}",
              ok=daily["requests"] <= DAILY_REQUESTS, label="daily requests")
    failed = [name for name, ok in table.verdicts if not ok]
    passed = len(table.verdicts) - len(failed)
    stages = trades["stages"]
    notes = [
        "",
        f"**Overall: {verdict(not failed)}** ({passed}/{len(table.verdicts)} targets met"
        + (f"; missed: {', '.join(failed)})." if failed else ")."),
        "",
        "## Notes",
        "",
        f"- Machine: {r['machine']}. One run of `make bench`, {r['seconds'] / 60:.1f} minutes in all, every "
        "measurement after the other on the same database server; the machine is shared, so single numbers may "
        "move by about 10%.",
        f"- {case}: {r['window_trades']:,} synthetic trades of 2 futures in one UTC day (one `hist ingest` "
        "window) served by the replay gateway (tools/gateway.py) over HTTPS. Each measurement gets its own "
        "empty lake and a fresh database (`hist db init`).",
        "- Baselines, same rows: `DBNStore.to_parquet()` of the same raw DBN files (transform); plain binary "
        "COPY = one `COPY ... FROM STDIN (FORMAT BINARY)` stream of the standardized Parquet rows on disk into the "
        f"same hypertable, encoded with pgpq, no load ledger or dedup ({trades['copy'].seconds:.1f} s for "
        f"{trades['copied']:,} rows); hand-written = `Historical.timeseries.get_range` through the same gateway, "
        f"`to_df()`, `to_csv()`, CSV COPY into a plain table with the DataFrame's columns, timed as one process "
        f"on the first {r['hours']} hours of the window ({hand_rows:,} rows, {hand.seconds:.1f} s) and compared "
        "by rate (its cost is per row; the whole window would hold the DataFrame and its CSV in memory).",
        "- Peak RSS is each process's VmHWM from /proc/<pid>/status, sampled every 20 ms until it exits (not "
        "wait4's ru_maxrss, which counts pages inherited at fork); data is generated in subprocesses.",
        f"- Batch: `--via batch` through the gateway's batch API (submit_job, job states, list_files, "
        f"downloads) with `batch_poll_seconds` 0.2 from a temporary config copy; {batch['records']:,} rows "
        f"against {bars['records']:,} streamed.",
        f"- Daily bars: 2014-03-05 to 2024-03-05, requests counted in the gateway's request log "
        f"({daily['requests']} `timeseries.get_range`).",
        f"- Profile of the window's `hist ingest` ({ingest.seconds:.1f} s, from its JSON lifecycle log): "
        f"{profile(ingest)}. The same stages run alone: extract {stages['extract'].seconds:.1f} s, transform "
        f"{stages['transform'].seconds:.1f} s, load {stages['load'].seconds:.1f} s.",
        f"- Profile of the batch ingest: {profile(batch['measure'])}.",
    ]
    return "# Benchmarks (`make bench`)\n\n" + "\n".join(table.lines + notes) + "\n"
