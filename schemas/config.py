"""The pipeline configuration (`configs/api_specific/databento_config.yaml`), parsed into Pydantic models.

Relative paths in the file are resolved against the file's own folder. A bad file is reported as one
line naming the file, the field and the problem.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lake.errors import ConfigError

MAX_SYMBOLS_PER_REQUEST = 2000
DATASET_PATTERN = re.compile(r"^[A-Z0-9]+\.[A-Z0-9]+$")
STYPES = ("raw_symbol", "instrument_id", "parent", "continuous", "smart")


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["databento"] = "databento"
    key_env_var: str = "DATABENTO_API_KEY"
    gateway: str | None = Field(default=None, description="Overridden by DATABENTO_GATEWAY.")


class RetryPolicy(BaseModel):
    """How transient failures (429, 5xx, broken streams, connection errors) are retried."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=50)
    initial_backoff_seconds: float = Field(default=1.0, ge=0)
    max_backoff_seconds: float = Field(default=60.0, ge=0)
    jitter_seconds: float = Field(default=1.0, ge=0)


class JobConfig(BaseModel):
    """One named ingestion job. `end_date` is exclusive, as in Databento's API."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: str
    schema_: str = Field(alias="schema")
    symbols: list[str]
    stype_in: str = "raw_symbol"
    start_date: date
    end_date: date
    date_chunk_interval_days: int | None = Field(
        default=None, ge=1, le=3660, description="Fixed N-day requests instead of windows sized to the schema.")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if not DATASET_PATTERN.match(value):
            raise ValueError(f"'{value}' is not a Databento dataset code such as GLBX.MDP3")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("the symbol list is empty")
        return value

    @field_validator("stype_in")
    @classmethod
    def _stype(cls, value: str) -> str:
        if value not in STYPES:
            raise ValueError(f"'{value}' is not one of {', '.join(STYPES)}")
        return value

    @model_validator(mode="after")
    def _window(self) -> JobConfig:
        if self.end_date <= self.start_date:
            raise ValueError(
                f"end_date {self.end_date} must be after start_date {self.start_date} (end is exclusive)"
            )
        return self


class HistConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api: ApiConfig = Field(default_factory=ApiConfig)
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    max_cost_usd: float | None = Field(default=None, ge=0)
    mapping_config_path: Path
    validation_schema_paths: list[Path]
    transform_batch_records: int = Field(default=250_000, ge=1_000)
    load_batch_rows: int = Field(default=20_000, ge=1_000)
    transform_workers: int = Field(default=2, ge=1, le=16, description="Small chunks transformed at once.")
    load_workers: int = Field(default=2, ge=1, le=32, description="Parallel COPY streams into TimescaleDB.")
    batch_above_bytes: int = Field(default=5_000_000_000, ge=0, description=(
        "Jobs whose billable size is above this go through Databento's batch API (its guidance: 5 GB)."))
    batch_poll_seconds: float = Field(default=30.0, ge=0, description="Between polls of a batch job's state.")
    jobs: list[JobConfig] = Field(default_factory=list)

    def job(self, name: str) -> JobConfig:
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(j.name for j in self.jobs) or "none"
        raise ConfigError(f"no job named '{name}' in the config (jobs: {known})")


def load_config(path: Path) -> HistConfig:
    """Read and validate the config file; every problem becomes one ConfigError line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} malformed YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        config = HistConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc
    base = path.parent
    return config.model_copy(
        update={
            "mapping_config_path": (base / config.mapping_config_path).resolve(),
            "validation_schema_paths": [(base / p).resolve() for p in config.validation_schema_paths],
        }
    )


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a Pydantic error as 'field a.b: message (got value)'."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
    extra = f" and {len(exc.errors()) - 1} more problem(s)" if len(exc.errors()) > 1 else ""
    return f"field {field}: {message}{shown}{extra}"
