"""The Pydantic record contracts and the SQL rules agree: a property test over random records, and
DatabentoAdapter.iter_records yielding validated instances."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from unittest import mock

import databento_dbn as dbn
import numpy as np
import pytest
from databento import DBNStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.config import JobConfig, RetryPolicy
from schemas.records import DatabentoRecord, OhlcvRecord, model_for_schema
from schemas.secrets import Secret
from stages.extract.databento_adapter import DatabentoAdapter
from tests.unit.test_transform_sql import DAY, ES, run_sql, write
from tools.generate import empty, generate

INT64 = st.one_of(st.integers(-10**13, 10**13), st.sampled_from([0, 1, -1, dbn.UNDEF_PRICE]))
RECORD_KEYS = {
    "ohlcv-1m": {"open": INT64, "high": INT64, "low": INT64, "close": INT64,
                 "volume": st.one_of(st.integers(0, 10**6), st.just(2**64 - 1))},
    "trades": {"price": INT64, "size": st.integers(0, 3), "side": st.sampled_from([b"A", b"B", b"N", b"X", b"\0"]),
               "ts_event": st.sampled_from([DAY + 5, dbn.UNDEF_TIMESTAMP])},
    "tbbo": {"price": INT64, "size": st.integers(0, 3), "side": st.sampled_from([b"A", b"B", b"Z"]),
             "bid_px_00": INT64, "ask_px_00": INT64},
    "statistics": {"stat_type": st.sampled_from([1, 3, 4, 5, 6, 9]), "update_action": st.sampled_from([1, 2, 3]),
                   "price": INT64, "quantity": st.sampled_from([0, 5, 2**63 - 1]),
                   "ts_event": st.sampled_from([DAY + 5, dbn.UNDEF_TIMESTAMP])},
}


def records_for(schema: str, values: list[dict[str, int | bytes]]) -> np.ndarray:
    records = empty(schema, len(values))
    records["instrument_id"] = ES
    for name in ("ts_event", "ts_recv"):
        if name in (records.dtype.names or ()):
            records[name] = DAY + 10
    for record, fields in zip(records, values, strict=True):
        for name, value in fields.items():
            record[name] = value
    return records


def pydantic_accepts(schema: str, records: np.ndarray, path: Path) -> list[bool]:
    model = model_for_schema(schema)
    verdicts = []
    for record in DBNStore.from_file(path):
        try:
            model.from_dbn(record)
            verdicts.append(True)
        except ValidationError:
            verdicts.append(False)
    return verdicts


@pytest.mark.parametrize("schema", list(RECORD_KEYS))
def test_sql_rules_and_pydantic_models_accept_and_reject_the_same_records(schema: str, tmp_path: Path) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.fixed_dictionaries(RECORD_KEYS[schema]), min_size=1, max_size=12))
    def agree(values: list[dict[str, int | bytes]]) -> None:
        records = records_for(schema, values)
        path = write(tmp_path / "p.dbn.zst", schema, records)
        con, compiled = run_sql(path, schema)
        quarantined = {row[0] for row in con.execute(f"SELECT rec_seq FROM ({compiled.quarantine})").fetchall()}
        sql_accepts = [i not in quarantined for i in range(len(records))]
        assert sql_accepts == pydantic_accepts(schema, records, path), values

    agree()


def test_iter_records_given_job_yields_validated_models(tmp_path: Path) -> None:
    generate(tmp_path, "GLBX.MDP3", ["ESH4"], date(2024, 1, 2), date(2024, 1, 3), ["ohlcv-1m"], seed=2,
             trades_per_day=1)
    client = mock.MagicMock()
    client.timeseries.get_range.return_value = DBNStore.from_file(
        tmp_path / "GLBX.MDP3" / "ohlcv-1m" / "2024-01-02.dbn.zst")
    with mock.patch("databento.Historical", return_value=client):
        adapter = DatabentoAdapter(Secret("db-x"), None, RetryPolicy())
    job = JobConfig.model_validate({"name": "j", "dataset": "GLBX.MDP3", "schema": "ohlcv-1m", "symbols": ["ESH4"],
                                    "start_date": "2024-01-02", "end_date": "2024-01-03"})

    records: list[DatabentoRecord] = list(adapter.iter_records(job, "ohlcv-1m"))

    assert len(records) > 1000 and all(isinstance(r, OhlcvRecord) for r in records)
    first = next(iter(client.timeseries.get_range.return_value))
    assert records[0].open * 10**9 == first.open  # type: ignore[attr-defined]
    assert "path" not in client.timeseries.get_range.call_args.kwargs
