"""Databento's own published sample files (two venues, DBN v3), served through the replay gateway and
ingested on a host in New York time: every record of every supported schema lands, and every field
Databento decodes is stored under its column with exactly Databento's value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from databento import DBNStore
from psycopg import sql

from tests.conftest import Gateway, HistRunner, runner_for, serving
from tests.integration.test_schemas_exact import MAPPINGS, expected, ordering, stored
from tools.samples import import_samples

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "databento"  # copies of Databento's files (README)
SCHEMAS = ["ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "trades", "tbbo", "statistics", "definition"]
STRUCTURAL = {"length", "rtype"}  # the record's size and type: implied by the table and its interval
HOST_TZ = "America/New_York"


@pytest.fixture(scope="module")
def sample_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("samples")
    import_samples(SAMPLES, data)
    with serving(data, tmp_path_factory.mktemp("sample-gateway")) as server:
        yield server


def sample_files() -> list[Path]:
    return sorted(f for f in SAMPLES.glob("*/test_data.*.dbn.zst") if f.name.split(".")[1] in SCHEMAS)


def record_fields(record: object) -> list[str]:
    return [n for n, _ in type(record)._dtypes if n not in STRUCTURAL and not n.startswith("_")]  # type: ignore[attr-defined]


def test_real_samples_given_non_utc_host_land_with_no_field_lost_changed_or_unstored(
        sample_gateway: Gateway, database_url: str, tmp_path: Path, test_config: Path) -> None:
    hist: HistRunner = runner_for(sample_gateway, database_url, tmp_path / "lake", test_config)
    hist.env["TZ"] = HOST_TZ
    files, records_in, compared, lost, changed, unstored = 0, 0, 0, [], [], set()
    for path in sample_files():
        dataset, schema = path.parent.name, path.name.split(".")[1]
        store = DBNStore.from_file(path)
        symbol = store.metadata.symbols[0]
        hist("ingest", "--dataset", dataset, "--schema", schema, "--symbols", symbol,
             "--start-date", "2020-12-28", "--end-date", "2020-12-29")
        kind = MAPPINGS.kind_for(schema)
        sources = {c.source for c in kind.columns.values()}
        records = list(store)
        unstored |= {f"{schema}.{f}" for r in records[:1] for f in record_fields(r) if f not in sources}
        rows = stored_rows(database_url, kind.table, list(kind.columns), ordering(kind), dataset,
                           MAPPINGS.schema_mapping(schema).interval)
        order = ordering(kind)
        records.sort(key=lambda r: tuple(_source(r, kind.columns[c].source) for c in order))
        lost += [f"{dataset}/{schema}: {len(records)} records, {len(rows)} rows"] if len(rows) != len(records) else []
        for row, record in zip(rows, records, strict=False):
            values = dict(zip(kind.columns, row, strict=True))
            for name, column in kind.columns.items():
                if column.as_ in ("dataset", "interval"):
                    continue
                compared += 1
                want, got = expected(record, column, symbol), stored(values[name], column)
                if want != got:
                    changed.append(f"{dataset}/{schema}.{name}: Databento {want!r}, stored {got!r}")
        files, records_in = files + 1, records_in + len(records)

    quarantined = list((hist.lake / "quarantine").rglob("*.parquet"))
    print(f"\nreal samples under TZ={HOST_TZ}: {files} files from {len({f.parent for f in sample_files()})} venues,"
          f" {records_in} records, {compared} stored values compared: {len(lost)} lost, {len(changed)} changed,"
          f" {len(unstored)} unstored fields, {len(quarantined)} quarantine files")
    assert files == 15 and records_in > 0
    assert not lost and not quarantined, lost
    assert not changed, "\n".join(changed)
    assert not unstored, sorted(unstored)


def _source(record: object, name: str | None) -> object:
    value = getattr(record.levels[0], name[:-3]) if name and name.endswith("_00") else getattr(record, name or "")  # type: ignore[attr-defined]
    return value.value if hasattr(value, "value") else value


def stored_rows(database_url: str, table: str, columns: list[str], order: list[str], dataset: str,
                interval: str | None) -> list[tuple[object, ...]]:
    where = sql.SQL("dataset = %s") + (sql.SQL(" AND interval = %s") if interval else sql.SQL(""))
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table), where,
            sql.SQL(", ").join(map(sql.Identifier, order))), [dataset, *([interval] if interval else [])]).fetchall()
