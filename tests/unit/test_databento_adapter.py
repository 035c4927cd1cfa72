"""DatabentoAdapter with databento.Historical mocked: parameters, DBNStore decoding, chunking, retries."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from pathlib import Path
from unittest import mock

import pytest
from databento import DBNStore
from databento.common.error import BentoClientError, BentoError, BentoServerError

from lake.errors import TerminalError, TransientError
from schemas.config import JobConfig, RetryPolicy
from schemas.secrets import Secret
from stages.extract.databento_adapter import DatabentoAdapter
from stages.extract.planner import (
    MAX_RECORDS_PER_REQUEST,
    TICK_RECORDS_PER_SYMBOL_DAY,
    plan_chunks,
)
from tools.generate import generate

FAST = RetryPolicy(max_attempts=3, initial_backoff_seconds=0, max_backoff_seconds=0.01, jitter_seconds=0)
KEY = "db-" + "unitTESTkey" + "0" * 18  # built at run time: nothing key-shaped is committed


def job(**overrides: object) -> JobConfig:
    fields: dict[str, object] = {"name": "j", "dataset": "GLBX.MDP3", "schema": "ohlcv-1m", "symbols": ["ESH4", "NQH4"],
                                 "start_date": date(2024, 1, 2), "end_date": date(2024, 1, 5)}
    return JobConfig.model_validate({**fields, **overrides})


@pytest.fixture(scope="module")
def dbn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dbn")
    generate(root, "GLBX.MDP3", ["ESH4"], date(2024, 1, 2), date(2024, 1, 3), ["ohlcv-1m"], seed=1, trades_per_day=1)
    return root / "GLBX.MDP3" / "ohlcv-1m" / "2024-01-02.dbn.zst"


def adapter_with(client: mock.MagicMock, policy: RetryPolicy = FAST) -> DatabentoAdapter:
    with mock.patch("databento.Historical", return_value=client) as historical:
        adapter = DatabentoAdapter(Secret(KEY), "127.0.0.1:9", policy)
    historical.assert_called_once_with(key=KEY, gateway="127.0.0.1:9")
    return adapter


def writes(dbn_file: Path):  # type: ignore[no-untyped-def]
    """A get_range side effect that streams the real DBN file to `path`, as the client does."""
    def get_range(**params: object) -> DBNStore:
        Path(str(params["path"])).write_bytes(dbn_file.read_bytes())
        return DBNStore.from_file(params["path"])  # type: ignore[arg-type]
    return get_range


def test_fetch_given_chunk_passes_request_parameters_and_counts_records(dbn_file: Path, tmp_path: Path) -> None:
    client = mock.MagicMock()
    client.timeseries.get_range.side_effect = writes(dbn_file)
    adapter = adapter_with(client)
    chunk = adapter.plan(job(date_chunk_interval_days=1), "ohlcv-1m")[0]

    records = adapter.fetch(chunk, tmp_path / "out.dbn.zst")

    client.timeseries.get_range.assert_called_once_with(
        dataset="GLBX.MDP3", symbols=["ESH4", "NQH4"], schema="ohlcv-1m", stype_in="raw_symbol",
        stype_out="instrument_id", start="2024-01-02T00:00:00+00:00", end="2024-01-03T00:00:00+00:00",
        path=tmp_path / "out.dbn.zst")
    assert records == len(list(DBNStore.from_file(dbn_file))) > 1000


def test_fetch_given_instrument_id_request_asks_for_raw_symbols(dbn_file: Path, tmp_path: Path) -> None:
    client = mock.MagicMock()
    client.timeseries.get_range.side_effect = writes(dbn_file)
    adapter = adapter_with(client)

    adapter.fetch(adapter.plan(job(stype_in="instrument_id", symbols=["42"]), "ohlcv-1m")[0], tmp_path / "o")

    assert client.timeseries.get_range.call_args.kwargs["stype_out"] == "raw_symbol"


def test_plan_given_three_days_and_two_day_interval_makes_utc_aligned_chunks() -> None:
    chunks = plan_chunks(job(date_chunk_interval_days=2), "ohlcv-1m")

    assert [(c.start, c.end) for c in chunks] == [
        (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)),
        (datetime(2024, 1, 4, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC)),
    ]
    assert len({c.chunk_id for c in chunks}) == 2
    assert plan_chunks(job(date_chunk_interval_days=2), "ohlcv-1m")[0].chunk_id == chunks[0].chunk_id


def test_plan_given_4500_symbols_splits_requests_at_2000() -> None:
    chunks = plan_chunks(job(symbols=[f"S{i}" for i in range(4500)], end_date=date(2024, 1, 3)), "ohlcv-1d")

    assert [len(c.symbols) for c in chunks] == [2000, 2000, 500]


def test_plan_given_tick_schema_splits_symbols_so_one_request_stays_under_the_bound() -> None:
    chunks = plan_chunks(job(symbols=[f"S{i}" for i in range(100)], end_date=date(2024, 1, 3)), "trades")

    assert max(len(c.symbols) for c in chunks) == MAX_RECORDS_PER_REQUEST // TICK_RECORDS_PER_SYMBOL_DAY
    assert sorted(s for c in chunks for s in c.symbols) == sorted(f"S{i}" for i in range(100))


@pytest.mark.parametrize(("schema", "start", "end", "expected"), [
    ("ohlcv-1d", date(2014, 3, 5), date(2024, 3, 5), 11),   # calendar years
    ("ohlcv-1h", date(2023, 1, 1), date(2024, 1, 1), 12),   # months
    ("definition", date(2024, 1, 1), date(2024, 4, 1), 3),
    ("ohlcv-1m", date(2024, 1, 3), date(2024, 1, 31), 5),   # ISO weeks, Monday to Monday
    ("trades", date(2024, 1, 2), date(2024, 1, 5), 3),      # UTC days
])
def test_plan_given_schema_sizes_windows_to_its_record_rate_on_calendar_boundaries(
        schema: str, start: date, end: date, expected: int) -> None:
    chunks = plan_chunks(job(start_date=start, end_date=end), schema)

    assert len(chunks) == expected
    assert chunks[0].start.date() == start and chunks[-1].end.date() == end
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
    inner = [c.start.date() for c in chunks[1:]]
    unit = {"ohlcv-1d": lambda d: (d.month, d.day) == (1, 1), "ohlcv-1h": lambda d: d.day == 1,
            "definition": lambda d: d.day == 1, "ohlcv-1m": lambda d: d.weekday() == 0, "trades": lambda d: True}
    assert all(unit[schema](d) for d in inner)


def test_plan_given_extended_job_plans_only_the_gaps() -> None:
    earlier = plan_chunks(job(start_date=date(2024, 1, 10), end_date=date(2024, 1, 20)), "ohlcv-1h")
    later = job(start_date=date(2024, 1, 1), end_date=date(2024, 3, 1))

    chunks = plan_chunks(later, "ohlcv-1h", earlier)

    windows = [(c.start.date(), c.end.date()) for c in chunks]
    assert windows == [(date(2024, 1, 1), date(2024, 1, 10)), (date(2024, 1, 10), date(2024, 1, 20)),
                       (date(2024, 1, 20), date(2024, 2, 1)), (date(2024, 2, 1), date(2024, 3, 1))]
    assert earlier[0] in chunks and plan_chunks(later, "ohlcv-1h", [*earlier, *chunks]) == chunks


def test_plan_given_one_symbol_added_to_120_held_asks_for_that_symbol_alone() -> None:
    held = plan_chunks(job(schema="trades", symbols=[f"S{i:03d}" for i in range(120)]), "trades")
    grown = job(schema="trades", symbols=[f"S{i:03d}" for i in range(121)])

    chunks = plan_chunks(grown, "trades", held)

    assert len(held) == 9 and set(held) <= set(chunks), "3 days x 3 groups of 40, every one reused"
    new = [c for c in chunks if c not in held]
    assert [(c.symbols, c.start.day, c.end.day) for c in new] == [(("S120",), d, d + 1) for d in (2, 3, 4)]


def test_plan_given_symbols_held_on_some_days_asks_for_each_symbols_missing_days_only() -> None:
    first = plan_chunks(job(schema="trades", symbols=["ESH4"], end_date=date(2024, 1, 3)), "trades")
    both = job(schema="trades", symbols=["ESH4", "NQH4"], end_date=date(2024, 1, 4))

    chunks = plan_chunks(both, "trades", first)

    cells = {(s, c.start.day) for c in chunks for s in c.symbols}
    assert cells == {("ESH4", 2), ("ESH4", 3), ("NQH4", 2), ("NQH4", 3)}
    assert [c.symbols for c in chunks] == [("ESH4",), ("NQH4",), ("ESH4", "NQH4")], "days lacked alike share a request"


def test_plan_given_bytes_held_for_another_schema_of_the_same_source_plans_them_again_under_this_schema() -> None:
    one_minute = plan_chunks(job(symbols=["ESH4"]), "ohlcv-1m")

    five_minute = plan_chunks(job(schema="ohlcv-5m", symbols=["ESH4", "NQH4"]), "ohlcv-1m", one_minute)

    reused = [c for c in five_minute if c.symbols == ("ESH4",)]
    assert [c.source_key for c in reused] == [c.source_key for c in one_minute]
    assert all(c.schema_ == "ohlcv-5m" for c in five_minute)
    assert {s for c in five_minute for s in c.symbols if c not in reused} == {"NQH4"}


def test_fetch_given_server_error_then_success_retries_and_leaves_no_partial_file(dbn_file: Path,
                                                                                   tmp_path: Path) -> None:
    client = mock.MagicMock()
    seen_existing: list[bool] = []
    good = writes(dbn_file)

    def flaky(**params: object) -> DBNStore:
        seen_existing.append(Path(str(params["path"])).exists())
        if len(seen_existing) == 1:
            Path(str(params["path"])).write_bytes(b"partial")
            raise BentoError("Error streaming response: connection reset")
        if len(seen_existing) == 2:
            raise BentoServerError(http_status=502, message="bad gateway")
        return good(**params)

    client.timeseries.get_range.side_effect = flaky
    adapter = adapter_with(client)

    records = adapter.fetch(adapter.plan(job(), "ohlcv-1m")[0], tmp_path / "out.dbn.zst")

    assert records > 0 and seen_existing == [False, False, False]


def test_fetch_given_429_waits_retry_after(dbn_file: Path, tmp_path: Path) -> None:
    client = mock.MagicMock()
    good = writes(dbn_file)
    calls: list[int] = []

    def limited(**params: object) -> DBNStore:
        calls.append(1)
        if len(calls) == 1:
            raise BentoClientError(http_status=429, message="Too many requests", headers={"Retry-After": "0.05"})
        return good(**params)

    client.timeseries.get_range.side_effect = limited
    adapter = adapter_with(client, RetryPolicy(max_attempts=2, initial_backoff_seconds=30, max_backoff_seconds=60,
                                               jitter_seconds=0))
    with mock.patch("time.sleep") as sleep:
        adapter.fetch(adapter.plan(job(), "ohlcv-1m")[0], tmp_path / "out.dbn.zst")

    sleep.assert_called_once_with(0.05)


def test_fetch_given_422_fails_at_once_without_leaking_the_key(tmp_path: Path) -> None:
    client = mock.MagicMock()
    client.timeseries.get_range.side_effect = BentoClientError(http_status=422, message=f"bad symbols for {KEY}")
    adapter = adapter_with(client)

    with pytest.raises(TerminalError) as failure:
        adapter.fetch(adapter.plan(job(), "ohlcv-1m")[0], tmp_path / "out.dbn.zst")

    assert client.timeseries.get_range.call_count == 1
    assert "HTTP 422" in str(failure.value) and KEY not in str(failure.value)


def test_fetch_given_undecodable_body_retries_then_fails_transient(tmp_path: Path) -> None:
    client = mock.MagicMock()

    def garbage(**params: object) -> DBNStore:
        Path(str(params["path"])).write_bytes(b"\x28\xb5\x2f\xfd" + b"not zstd at all")
        return DBNStore.from_file(params["path"])  # type: ignore[arg-type]

    client.timeseries.get_range.side_effect = garbage
    adapter = adapter_with(client)

    with pytest.raises(TransientError):
        adapter.fetch(adapter.plan(job(), "ohlcv-1m")[0], tmp_path / "out.dbn.zst")

    assert client.timeseries.get_range.call_count == FAST.max_attempts
    assert not (tmp_path / "out.dbn.zst").exists()


def test_adapter_given_no_key_refuses_to_start() -> None:
    with pytest.raises(TerminalError, match="no Databento API key"):
        DatabentoAdapter(Secret(""), None, FAST)
