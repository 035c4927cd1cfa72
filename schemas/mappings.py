"""The mapping contract (`databento_mappings.yaml`): how each Databento record kind becomes a row of
a standardized table. Parsed here so that the transform (which compiles it to SQL) and the loader
(which needs each table's identity columns) read one definition."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lake.errors import ConfigError
from schemas.config import describe_validation_error

Conversion = Literal[
    "price", "quantity", "timestamp", "nanos", "int16", "int32", "int64", "char", "text",
    "dataset", "symbol", "raw_symbol", "interval",
]
Aggregate = Literal["first", "last", "min", "max", "sum"]
CONTEXT_CONVERSIONS = ("dataset", "symbol", "raw_symbol", "interval")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")  # names from config reach SQL only if they match
Severity = Literal["quarantine", "warn"]


class ColumnMapping(BaseModel):
    """One standardized column: `from` names the source field; `as` says how to convert it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str | None = Field(default=None, alias="from")
    as_: Conversion = Field(alias="as")
    null_if_max: bool = Field(default=False, description="The field's type maximum means 'unset'.")

    @model_validator(mode="after")
    def _needs_source(self) -> ColumnMapping:
        if self.as_ not in CONTEXT_CONVERSIONS and not self.source:
            raise ValueError(f"conversion '{self.as_}' needs a 'from' field")
        return self


class RecordKind(BaseModel):
    """A Databento record layout (ohlcv, trade, ...) and the table its rows go to."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    index_ts: str
    time_column: str
    identity: list[str]
    columns: dict[str, ColumnMapping]
    resample: dict[str, Aggregate] = Field(default_factory=dict,
                                           description="How derived bars aggregate each value column.")

    @model_validator(mode="after")
    def _known_columns(self) -> RecordKind:
        for name in [*self.columns, *(c.source for c in self.columns.values() if c.source), self.index_ts]:
            if not IDENTIFIER.match(name):
                raise ValueError(f"'{name}' is not a plain column name (lower-case letters, digits, _)")
        for name in [*self.identity, self.time_column, *self.resample]:
            if name not in self.columns:
                raise ValueError(f"'{name}' is not one of the mapped columns")
        return self


class SchemaFilter(BaseModel):
    """A named subset of a schema's records: those failing `keep_if` (SQL on the source fields) are
    counted per chunk as filtered under `name`, never dropped silently."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    keep_if: str


class SchemaMapping(BaseModel):
    """A schema a user can ask for, the schema requested from Databento for it, and its record kind."""

    model_config = ConfigDict(extra="forbid")

    record: str
    source_schema: str
    interval: str | None = None
    filter: SchemaFilter | None = None
    resample_seconds: int | None = Field(default=None, gt=0, description="Aggregate source bars into buckets.")

    @model_validator(mode="after")
    def _divides_a_day(self) -> SchemaMapping:
        if self.resample_seconds and 86_400 % self.resample_seconds:
            raise ValueError("resample_seconds must divide a day, so no bucket spans two day chunks")
        return self


class MappingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    aliases: dict[str, str] = Field(default_factory=dict, description="Other spellings of a schema.")
    record_kinds: dict[str, RecordKind]
    schemas: dict[str, SchemaMapping]
    digest: str = ""

    @model_validator(mode="after")
    def _known_records(self) -> MappingConfig:
        for name, schema in self.schemas.items():
            if schema.record not in self.record_kinds:
                raise ValueError(f"schema {name}: unknown record kind '{schema.record}'")
            if schema.resample_seconds and not self.record_kinds[schema.record].resample:
                raise ValueError(f"schema {name}: record kind '{schema.record}' has no resample rules")
            if schema.resample_seconds and self.schemas.get(schema.source_schema, schema).interval is None:
                raise ValueError(f"schema {name}: source schema '{schema.source_schema}' has no interval")
        for alias, target in self.aliases.items():
            if target not in self.schemas:
                raise ValueError(f"alias {alias}: unknown schema '{target}'")
        return self

    def canonical(self, schema: str) -> str:
        """The schema's own name for one of its aliases (ohlcv.1m -> ohlcv-1m); unknown names fail."""
        name = self.aliases.get(schema, schema)
        if name not in self.schemas:
            known = ", ".join(sorted([*self.schemas, *self.aliases]))
            raise ConfigError(f"unknown schema '{schema}' (supported: {known})")
        return name

    def schema_mapping(self, schema: str) -> SchemaMapping:
        return self.schemas[self.canonical(schema)]

    def source_interval(self, schema: str) -> str | None:
        """The bar interval of the records requested for `schema` (1m for the derived 5m bars)."""
        mapping = self.schema_mapping(schema)
        return self.schemas[mapping.source_schema].interval if mapping.source_schema in self.schemas \
            else mapping.interval

    def kind_for(self, schema: str) -> RecordKind:
        return self.record_kinds[self.schema_mapping(schema).record]



class Rule(BaseModel):
    """A named validation rule: `check` is a DuckDB SQL condition a good row satisfies. It may use
    {start_ns} and {end_ns}, the chunk's window in nanoseconds, and the rule file's {params}."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    severity: Severity = "quarantine"
    check: str
    description: str = ""


ParamValue = str | int | float | list[str] | list[int]


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    rules: dict[str, list[Rule]]


class Rules(BaseModel):
    """Every rule per record kind, and the parameters their checks may name, from all rule files."""

    by_kind: dict[str, list[Rule]] = Field(default_factory=dict)
    params: dict[str, ParamValue] = Field(default_factory=dict)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {getattr(exc, 'problem', exc)}") from exc


def load_mappings(path: Path) -> MappingConfig:
    try:
        mapping = MappingConfig.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc
    return mapping.model_copy(update={"digest": hashlib.sha256(path.read_bytes()).hexdigest()})


def load_rules(paths: list[Path]) -> Rules:
    """All rules per record kind, from every validation file in order."""
    merged = Rules()
    for path in paths:
        try:
            ruleset = RuleSet.model_validate(_read_yaml(path))
        except ValidationError as exc:
            raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc
        for kind, rules in ruleset.rules.items():
            merged.by_kind.setdefault(kind, []).extend(rules)
        merged.params.update(ruleset.params)
    return merged


def rules_version(mapping: MappingConfig, rule_paths: list[Path]) -> str:
    """A short content hash of the mapping and rule files: recorded in the manifest so a change of
    either is visible per chunk."""
    digest = hashlib.sha256(mapping.digest.encode())
    for path in rule_paths:
        digest.update(path.read_bytes())
    return f"{mapping.version}+{digest.hexdigest()[:12]}"
