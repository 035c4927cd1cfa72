"""Configuration: the shipped file parses; each bad file gets one line naming file, field and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake.errors import ConfigError
from schemas.config import load_config
from schemas.mappings import load_mappings

SHIPPED = Path(__file__).parents[2] / "configs" / "api_specific" / "databento_config.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


BASE = "mapping_config_path: m.yaml\nvalidation_schema_paths: [r.yaml]\n"
JOB = ("jobs:\n  - name: j\n    dataset: GLBX.MDP3\n    schema: ohlcv-1m\n    symbols: [ESH4]\n"
       "    start_date: 2024-01-02\n    end_date: 2024-01-04\n")


def test_shipped_config_parses_with_paths_resolved() -> None:
    config = load_config(SHIPPED)

    assert config.job("es_nq_ohlcv_1m").symbols == ["ESH4", "NQH4"]
    assert config.mapping_config_path.exists()
    assert "ohlcv-1m" in load_mappings(config.mapping_config_path).schemas


@pytest.mark.parametrize(("text", "expected"), [
    ("api: [unclosed\n", "malformed YAML"),
    (BASE + JOB.replace("end_date: 2024-01-04", "end_date: 2024-01-01"),
     "field jobs.0: end_date 2024-01-01 must be after start_date 2024-01-02"),
    (BASE + JOB.replace("symbols: [ESH4]", "symbols: []"), "field jobs.0.symbols: the symbol list is empty"),
    (BASE + JOB.replace("GLBX.MDP3", "glbx"), "field jobs.0.dataset: 'glbx' is not a Databento dataset code"),
    (BASE + "max_concurrency: 0\n", "field max_concurrency: Input should be greater than or equal to 1 (got 0)"),
    (BASE + "retyr_policy: {}\n", "field retyr_policy: Extra inputs are not permitted"),
])
def test_load_config_given_bad_file_names_file_field_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as failure:
        load_config(write(tmp_path, text))

    message = str(failure.value)
    assert message.startswith(str(tmp_path / "config.yaml")) and expected in message
    assert "\n" not in message


def test_job_given_unknown_name_lists_known_jobs() -> None:
    with pytest.raises(ConfigError, match=r"no job named 'nope'.*es_nq_ohlcv_1m"):
        load_config(SHIPPED).job("nope")


@pytest.mark.parametrize(("column", "source"), [('x"; DROP TABLE ohlcv_data; --', "open"), ("open", "open; --")])
def test_load_mappings_given_unsafe_identifier_refuses_it_before_any_sql(tmp_path: Path, column: str,
                                                                        source: str) -> None:
    text = (SHIPPED.parent.parent / "databento_mappings.yaml").read_text().replace(
        "      open: {from: open, as: price}", f"      '{column}': {{from: '{source}', as: price}}", 1)
    path = tmp_path / "mappings.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError, match="is not a plain column name"):
        load_mappings(path)


def test_job_given_dataset_with_sql_characters_is_refused() -> None:
    from pydantic import ValidationError

    from schemas.config import JobConfig

    with pytest.raises(ValidationError, match="is not a Databento dataset code"):
        JobConfig.model_validate({"name": "j", "dataset": "GLBX.MDP3'; --", "schema": "trades", "symbols": ["A"],
                                  "start_date": "2024-01-02", "end_date": "2024-01-03"})
