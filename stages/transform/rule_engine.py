"""RuleEngine: compiles the YAML mapping and validation rules into DuckDB SQL.

Nothing here knows a schema by name: a new column, conversion, rule or derived bar size is a YAML
change. The SQL runs over two relations the transform registers: `batch` (one Arrow batch of the DBN
records, one column per field, plus `rec_seq`, the record's position in the file; read as `src`) and
`sym` (the response's symbology: instrument_id, [start_ns, end_ns), symbol, raw_symbol)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
from databento_dbn import UNDEF_PRICE, UNDEF_STAT_QUANTITY, UNDEF_TIMESTAMP

from schemas.mappings import ColumnMapping, MappingConfig, ParamValue, RecordKind, Rule, Rules

AGGREGATES = {"first": "arg_min({c}, ts_event_ns){f}", "last": "arg_max({c}, ts_event_ns){f}", "min": "min({c}){f}",
              "max": "max({c}){f}", "sum": "CAST(sum({c}){f} AS BIGINT)"}  # {f}: an optional FILTER clause


def sql_literal(value: ParamValue) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def utc_connection(config: Mapping[str, str | int | bool] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose TIMESTAMPTZ values are UTC: results and Parquet files carry UTC, not
    the host's zone (the setting needs ICU, which loads only after connecting)."""
    con = duckdb.connect(config=dict(config or {}))
    con.execute("SET TimeZone = 'UTC'")
    return con


def utc_timestamp(nanos: str) -> str:
    """A TIMESTAMPTZ from nanoseconds since the epoch, read as UTC whatever the session's or the
    host's time zone (a plain cast to TIMESTAMPTZ would read the naive timestamp in local time)."""
    return f"timezone('UTC', make_timestamp(CAST({nanos} // 1000 AS BIGINT)))"


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
            return f"CASE WHEN {field} = {UNDEF_TIMESTAMP} THEN NULL ELSE {utc_timestamp(field)} END"
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


DERIVED_BAR_RULE = "derived_bar_complete"


@dataclass(frozen=True)
class CompiledTransform:
    """The SQL for one chunk. `rows` maps one Arrow batch of DBN records (`batch`) to standardized
    columns, `rec_seq`, an identity hash and each record's verdicts (`passed` the quarantine rules,
    `warn_ok` the warn rules); records failing the schema's named filter are left out. The transform
    appends every batch to the `mapped` table through it, so each record is converted and checked
    once. `setup` then runs in order: `dups` (the occurrence number of records whose identity repeats,
    which is rare, so the window runs over few rows) and the `checked` view (adds `dup_ordinal`);
    derived bars add `bucketed` and `bad_buckets` (buckets holding a quarantined source bar).
    `standardized`, `quarantine` and `warnings` read them; failed rule names are listed only for rows
    that failed, and warnings counted only on rows that are stored.
    `source_counts`, for derived bars, gives the source bars used and those in quarantined buckets.
    `filtered`, for a schema with a named filter, counts the records of `batch` the filter drops (its
    `keep_if` false or NULL), on its own rather than as what `rows` did not return, so a record lost
    any other way shows in the chunk's accounts."""

    rows: str
    setup: tuple[str, ...]
    standardized: str
    quarantine: str
    warnings: str
    source_counts: str | None = None
    filtered: str | None = None


class RuleEngine:
    def __init__(self, mapping: MappingConfig, rules: Rules) -> None:
        self.mapping = mapping
        self.rules = rules

    def compile(self, schema: str, dataset: str, start_ns: int, end_ns: int,
                source_types: Mapping[str, pa.DataType] | None = None) -> CompiledTransform:
        schema_mapping = self.mapping.schema_mapping(schema)
        kind = self.mapping.record_kinds[schema_mapping.record]
        types = source_types or {}
        interval = self.mapping.source_interval(schema)  # a derived bar's sources keep their own interval
        select = ",\n  ".join(
            f"{conversion_sql(col, dataset, interval, types.get(col.source or ''))} AS {quoted(name)}"
            for name, col in kind.columns.items()
        )
        index_ts = f"src.{quoted(kind.index_ts)}"
        keep_if = schema_mapping.filter.keep_if if schema_mapping.filter else None
        where = f"WHERE ({keep_if})" if keep_if else ""
        filtered = f"SELECT count(*) FROM batch AS src WHERE ({keep_if}) IS NOT TRUE" if keep_if else None
        rules = self.rules.by_kind.get(schema_mapping.record, [])
        quarantine_rules = [r for r in rules if r.severity == "quarantine"]
        warn_rules = [r for r in rules if r.severity == "warn"]
        rows = (  # `sym` holds non-overlapping intervals, so the join matches at most once
            f"SELECT *, hash({', '.join(quoted(c) for c in kind.identity)}) AS identity_hash,"
            f" {self._passes(quarantine_rules, start_ns, end_ns)} AS passed,"
            f" {self._passes(warn_rules, start_ns, end_ns)} AS warn_ok FROM (\n SELECT {select},\n"
            f"  src.rec_seq AS rec_seq\n FROM batch AS src LEFT JOIN sym ON sym.instrument_id = src.instrument_id"
            f" AND {index_ts} >= sym.start_ns AND {index_ts} < sym.end_ns\n {where})")
        dups = ("CREATE TEMP TABLE dups AS SELECT rec_seq, CAST(row_number() OVER (PARTITION BY identity_hash"
                " ORDER BY rec_seq) - 1 AS INTEGER) AS dup_ordinal FROM mapped WHERE identity_hash IN"
                " (SELECT identity_hash FROM mapped GROUP BY 1 HAVING count(*) > 1)")
        checked = ("CREATE TEMP VIEW checked AS SELECT m.* EXCLUDE (identity_hash, warn_ok), coalesce(d.dup_ordinal, 0)"
                   " AS dup_ordinal FROM mapped m LEFT JOIN dups d USING (rec_seq)")
        out = ", ".join(quoted(c) for c in (*kind.columns, "dup_ordinal"))
        failed = self._failed(quarantine_rules, start_ns, end_ns)
        quarantined_sources = (f"SELECT {out}, failed_rules[1] AS rule, failed_rules, CAST(NULL AS VARCHAR) AS detail,"
                               f" rec_seq FROM (SELECT *, {failed} AS failed_rules FROM checked WHERE NOT passed)")
        warnings = (f"SELECT rule, count(*) AS n FROM (SELECT unnest({self._failed(warn_rules, start_ns, end_ns)})"
                    " AS rule FROM mapped WHERE passed AND NOT warn_ok) GROUP BY rule ORDER BY rule")
        if not schema_mapping.resample_seconds:
            return CompiledTransform(
                rows=rows, setup=(dups, checked), standardized=f"SELECT {out} FROM checked WHERE passed",
                quarantine=f"{quarantined_sources} ORDER BY rec_seq", warnings=warnings, filtered=filtered)
        return self._derived(kind, schema_mapping.resample_seconds, schema_mapping.interval or "",
                             rows, (dups, checked), quarantined_sources, warnings, filtered)

    @staticmethod
    def _derived(kind: RecordKind, seconds: int, interval: str, rows: str, setup: tuple[str, ...],
                 quarantined_sources: str, warnings: str, filtered: str | None) -> CompiledTransform:
        """Clock-aligned bars of `seconds` built from every source bar of their bucket, or none: a
        bucket holding a quarantined source bar goes to quarantine whole, as a bar under
        DERIVED_BAR_RULE whose `detail` names the quarantined minutes (beside the source bars
        themselves), so no bar lands short. Empty buckets produce no bar."""
        bucket_ns = seconds * 1_000_000_000
        bucket_key = "instrument_id, publisher_id, bucket"
        bucketed = (f"CREATE TEMP TABLE bucketed AS SELECT *, ts_event_ns - ts_event_ns % {bucket_ns} AS bucket"
                    " FROM checked")
        bad = ("CREATE TEMP TABLE bad_buckets AS SELECT instrument_id, publisher_id, bucket, string_agg(strftime("
               "make_timestamp(CAST(ts_event_ns // 1000 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ'), ', ' ORDER BY ts_event_ns)"
               " AS missing FROM bucketed WHERE NOT passed GROUP BY ALL")

        def bar_columns(only_passed: bool) -> tuple[str, str]:
            select, keys = [], []
            for name in (*kind.columns, "dup_ordinal"):
                if name == "ts_event_ns":
                    select.append("bucket AS ts_event_ns")
                elif name == "ts_event":
                    select.append(f"{utc_timestamp('bucket')} AS ts_event")
                elif name == "dup_ordinal":
                    select.append("0 AS dup_ordinal")
                elif name == "interval":
                    select.append(f"{sql_literal(interval)} AS interval")
                elif name in kind.resample:
                    aggregate = AGGREGATES[kind.resample[name]].format(
                        c=quoted(name), f=" FILTER (WHERE passed)" if only_passed else "")
                    select.append(f"{aggregate} AS {quoted(name)}")
                else:
                    select.append(quoted(name))
                    keys.append(quoted(name))
            return ", ".join(select), ", ".join(["bucket", *keys])

        good_select, group = bar_columns(False)
        bad_select, _ = bar_columns(True)
        standardized = (f"SELECT {good_select} FROM bucketed ANTI JOIN bad_buckets USING ({bucket_key})"
                        f" GROUP BY {group} ORDER BY ts_event_ns, instrument_id")
        incomplete = (f"SELECT {bad_select}, {sql_literal(DERIVED_BAR_RULE)} AS rule, [{sql_literal(DERIVED_BAR_RULE)}]"
                      " AS failed_rules, 'quarantined source bars: ' || any_value(missing) AS detail,"
                      f" min(rec_seq) AS rec_seq FROM bucketed JOIN bad_buckets USING ({bucket_key}) GROUP BY {group}")
        return CompiledTransform(
            rows=rows, setup=(*setup, bucketed, bad), standardized=standardized,
            quarantine=f"SELECT * FROM ({quarantined_sources} UNION ALL {incomplete}) ORDER BY rec_seq, interval",
            warnings=warnings, filtered=filtered,
            source_counts=("SELECT count(*) FILTER (WHERE missing IS NULL), count(*) FILTER (WHERE missing IS NOT"
                           f" NULL) FROM bucketed LEFT JOIN bad_buckets USING ({bucket_key})"))

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
