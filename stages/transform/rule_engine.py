"""RuleEngine: compiles the YAML mapping and validation rules into DuckDB SQL.

Nothing here knows a schema by name: a new column, conversion, rule or derived bar size is a YAML
change. The SQL runs over two relations the transform registers: `src` (the DBN records, one column
per field, plus `rec_seq`, the record's position in the file) and `sym` (the response's symbology:
instrument_id, [start_ns, end_ns), symbol, raw_symbol)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from databento_dbn import UNDEF_PRICE, UNDEF_STAT_QUANTITY, UNDEF_TIMESTAMP

from schemas.mappings import ColumnMapping, MappingConfig, ParamValue, RecordKind, Rule, Rules

AGGREGATES = {"first": "arg_min({c}, ts_event_ns)", "last": "arg_max({c}, ts_event_ns)", "min": "min({c})",
              "max": "max({c})", "sum": "CAST(sum({c}) AS BIGINT)"}


def sql_literal(value: ParamValue) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def conversion_sql(column: ColumnMapping, dataset: str, interval: str | None, source_type: pa.DataType | None) -> str:
    """The DuckDB expression producing one standardized column from `src` and `sym`."""
    field = f"src.{quoted(column.source)}" if column.source else ""
    match column.as_:
        case "price":
            return (f"CASE WHEN {field} = {UNDEF_PRICE} THEN NULL ELSE CAST(CAST({field} AS DECIMAL(19,0))"
                    f" * CAST(0.000000001 AS DECIMAL(10,9)) AS DECIMAL(19,9)) END")
        case "quantity":
            return f"CASE WHEN {field} = {UNDEF_STAT_QUANTITY} THEN NULL ELSE CAST({field} AS BIGINT) END"
        case "timestamp":
            return (f"CASE WHEN {field} = {UNDEF_TIMESTAMP} THEN NULL ELSE "
                    f"CAST(make_timestamp(CAST({field} // 1000 AS BIGINT)) AS TIMESTAMPTZ) END")
        case "nanos":
            return f"CASE WHEN {field} = {UNDEF_TIMESTAMP} THEN NULL ELSE CAST({field} AS BIGINT) END"
        case "int16" | "int32" | "int64":
            target = {"int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT"}[column.as_]
            cast = f"TRY_CAST({field} AS {target})"  # out of range (a uint64 volume past int64) -> NULL
            if column.null_if_max and source_type is not None and pa.types.is_integer(source_type):
                return f"CASE WHEN {field} = {np.iinfo(source_type.to_pandas_dtype()).max} THEN NULL ELSE {cast} END"
            return cast
        case "char":
            return f"CASE WHEN {field} = 0 THEN NULL ELSE chr(CAST({field} AS INTEGER)) END"
        case "text":
            return f"NULLIF(rtrim(decode({field}), chr(0)), '')"
        case "dataset":
            return sql_literal(dataset)
        case "interval":
            return "NULL" if interval is None else sql_literal(interval)
        case "symbol":
            return "sym.symbol"
        case "raw_symbol":
            return "sym.raw_symbol"
    raise AssertionError(column.as_)


@dataclass(frozen=True)
class CompiledTransform:
    """The SQL for one chunk. `setup` runs first, in order: it materializes `mapped` (standardized
    columns, `rec_seq`, an identity hash), `dups` (the occurrence number of records whose identity
    repeats, which is rare, so the window runs over few rows) and the `checked` view (adds
    `dup_ordinal` and `passed`). `standardized`, `quarantine` and `warnings` read `checked`; failed
    rule names are listed only for rows that failed."""

    setup: tuple[str, ...]
    standardized: str
    quarantine: str
    warnings: str


class RuleEngine:
    def __init__(self, mapping: MappingConfig, rules: Rules) -> None:
        self.mapping = mapping
        self.rules = rules

    def compile(self, schema: str, dataset: str, start_ns: int, end_ns: int,
                source_types: Mapping[str, pa.DataType] | None = None) -> CompiledTransform:
        schema_mapping = self.mapping.schema_mapping(schema)
        kind = self.mapping.record_kinds[schema_mapping.record]
        types = source_types or {}
        select = ",\n  ".join(
            f"{conversion_sql(col, dataset, schema_mapping.interval, types.get(col.source or ''))} AS {quoted(name)}"
            for name, col in kind.columns.items()
        )
        index_ts = f"src.{quoted(kind.index_ts)}"
        where = f"WHERE {kind.keep_if}" if kind.keep_if else ""
        mapped = (  # `sym` holds non-overlapping intervals, so the join matches at most once
            f"CREATE TEMP TABLE mapped AS SELECT *, hash({', '.join(quoted(c) for c in kind.identity)})"
            f" AS identity_hash FROM (\n SELECT {select},\n  src.rec_seq AS rec_seq\n FROM src LEFT JOIN sym"
            f" ON sym.instrument_id = src.instrument_id AND {index_ts} >= sym.start_ns AND {index_ts} < sym.end_ns\n"
            f" {where})")
        dups = ("CREATE TEMP TABLE dups AS SELECT rec_seq, CAST(row_number() OVER (PARTITION BY identity_hash"
                " ORDER BY rec_seq) - 1 AS INTEGER) AS dup_ordinal FROM mapped WHERE identity_hash IN"
                " (SELECT identity_hash FROM mapped GROUP BY 1 HAVING count(*) > 1)")
        rules = self.rules.by_kind.get(schema_mapping.record, [])
        quarantine_rules = [r for r in rules if r.severity == "quarantine"]
        warn_rules = [r for r in rules if r.severity == "warn"]
        checked = (f"CREATE TEMP VIEW checked AS SELECT m.* EXCLUDE (identity_hash), coalesce(d.dup_ordinal, 0)"
                   f" AS dup_ordinal, {self._passes(quarantine_rules, start_ns, end_ns)} AS passed"
                   f" FROM mapped m LEFT JOIN dups d USING (rec_seq)")
        out = ", ".join(quoted(c) for c in (*kind.columns, "dup_ordinal"))
        good = f"SELECT {out}, rec_seq FROM checked WHERE passed"
        standardized = (self._resampled(kind, good, schema_mapping.resample_seconds)
                        if schema_mapping.resample_seconds else f"SELECT {out} FROM checked WHERE passed")
        failed = self._failed(quarantine_rules, start_ns, end_ns)
        return CompiledTransform(
            setup=(mapped, dups, checked),
            standardized=standardized,
            quarantine=(f"SELECT {out}, failed_rules[1] AS rule, failed_rules, rec_seq FROM (SELECT *, {failed}"
                        f" AS failed_rules FROM checked WHERE NOT passed) ORDER BY rec_seq"),
            warnings=(f"SELECT rule, count(*) AS n FROM (SELECT unnest({self._failed(warn_rules, start_ns, end_ns)})"
                      f" AS rule FROM checked WHERE NOT {self._passes(warn_rules, start_ns, end_ns)})"
                      " GROUP BY rule ORDER BY rule"),
        )

    @staticmethod
    def _resampled(kind: RecordKind, good: str, seconds: int) -> str:
        """Clock-aligned buckets of `seconds`: the record kind's `resample` aggregates for the value
        columns, the bucket start for the time columns, every other column a group key. Empty
        buckets produce no bar."""
        bucket_ns = seconds * 1_000_000_000
        select, keys = [], []
        for name in (*kind.columns, "dup_ordinal"):
            if name == "ts_event_ns":
                select.append("bucket AS ts_event_ns")
            elif name == "ts_event":
                select.append("CAST(make_timestamp(bucket // 1000) AS TIMESTAMPTZ) AS ts_event")
            elif name == "dup_ordinal":
                select.append("0 AS dup_ordinal")
            elif name in kind.resample:
                select.append(f"{AGGREGATES[kind.resample[name]].format(c=quoted(name))} AS {quoted(name)}")
            else:
                select.append(quoted(name))
                keys.append(quoted(name))
        return (f"SELECT {', '.join(select)} FROM (SELECT *, ts_event_ns - ts_event_ns % {bucket_ns} AS bucket"
                f" FROM ({good})) GROUP BY bucket, {', '.join(keys)} ORDER BY ts_event_ns, instrument_id")

    def _check(self, rule: Rule, start_ns: int, end_ns: int) -> str:
        params = {name: sql_literal(value) for name, value in self.rules.params.items()}
        return f"coalesce(({rule.check.format(start_ns=start_ns, end_ns=end_ns, **params)}), false)"

    def _passes(self, rules: list[Rule], start_ns: int, end_ns: int) -> str:
        return "(" + " AND ".join(self._check(r, start_ns, end_ns) for r in rules) + ")" if rules else "true"

    def _failed(self, rules: list[Rule], start_ns: int, end_ns: int) -> str:
        items = [f"CASE WHEN {self._check(r, start_ns, end_ns)} THEN NULL ELSE {sql_literal(r.name)} END"
                 for r in rules]
        if not items:
            return "CAST([] AS VARCHAR[])"
        return f"list_filter([{', '.join(items)}], lambda x: x IS NOT NULL)"
