"""RuleEngine: compiles the YAML mapping and validation rules into DuckDB SQL.

Nothing here knows a schema by name: a new column, conversion target or rule is a YAML change."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.mappings import ColumnMapping, MappingConfig, Rule

UNDEF_PRICE = 9223372036854775807
UNDEF_STAT_QUANTITY = 9223372036854775807
UNDEF_TIMESTAMP = 18446744073709551615


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _source(name: str) -> str:
    return f'src."{name}"'


def conversion_sql(column: ColumnMapping, dataset: str, interval: str | None) -> str:
    """The DuckDB expression producing one standardized column from the `src` relation."""
    field = _source(column.source) if column.source else ""
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
        case "int16":
            return f"CAST({field} AS SMALLINT)"
        case "int32":
            return f"CAST({field} AS INTEGER)"
        case "int64":
            return f"CAST({field} AS BIGINT)"
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
    raise AssertionError(column.as_)


@dataclass(frozen=True)
class CompiledTransform:
    """The SQL for one chunk: `mapped` builds standardized rows from `src` and `sym`; `checked`
    adds the failed rule names; the two selects split it into the output partitions."""

    mapped: str
    checked: str
    standardized: str
    quarantine: str
    warnings: str
    columns: tuple[str, ...]


class RuleEngine:
    def __init__(self, mapping: MappingConfig, rules: dict[str, list[Rule]]) -> None:
        self.mapping = mapping
        self.rules = rules

    def compile(self, schema: str, dataset: str, start_ns: int, end_ns: int) -> CompiledTransform:
        schema_mapping = self.mapping.schema_mapping(schema)
        kind = self.mapping.record_kinds[schema_mapping.record]
        columns = tuple(kind.columns)
        select = ",\n  ".join(
            f'{conversion_sql(col, dataset, schema_mapping.interval)} AS "{name}"'
            for name, col in kind.columns.items()
        )
        identity = ", ".join(f'"{c}"' for c in kind.identity)
        mapped = (
            f"SELECT *, CAST(row_number() OVER (PARTITION BY {identity} ORDER BY rec_seq) - 1 AS INTEGER)"
            f" AS dup_ordinal FROM (\n SELECT {select},\n  src.rec_seq AS rec_seq\n FROM src LEFT JOIN sym"
            f" ON sym.instrument_id = src.instrument_id AND {_source(kind.index_ts)} >= sym.start_ns"
            f" AND {_source(kind.index_ts)} < sym.end_ns\n"
            f" QUALIFY row_number() OVER (PARTITION BY src.rec_seq ORDER BY sym.symbol) = 1)"
        )
        rules = self.rules.get(schema_mapping.record, [])
        failed_quarantine = self._failed_list(rules, "quarantine", start_ns, end_ns)
        failed_warn = self._failed_list(rules, "warn", start_ns, end_ns)
        checked = f"SELECT *, {failed_quarantine} AS failed_rules, {failed_warn} AS warned_rules FROM mapped"
        out = ", ".join(f'"{c}"' for c in (*columns, "dup_ordinal"))
        order = f'"{kind.time_column}", rec_seq'
        return CompiledTransform(
            mapped=mapped,
            checked=checked,
            standardized=f"SELECT {out} FROM checked WHERE len(failed_rules) = 0 ORDER BY {order}",
            quarantine=(f"SELECT {out}, failed_rules[1] AS rule, failed_rules, rec_seq FROM checked"
                        f" WHERE len(failed_rules) > 0 ORDER BY {order}"),
            warnings=("SELECT rule, count(*) AS n FROM (SELECT unnest(warned_rules) AS rule FROM checked)"
                      " GROUP BY rule ORDER BY rule"),
            columns=columns,
        )

    @staticmethod
    def _failed_list(rules: list[Rule], severity: str, start_ns: int, end_ns: int) -> str:
        items = [
            f"CASE WHEN coalesce(({r.check.format(start_ns=start_ns, end_ns=end_ns)}), false) THEN NULL"
            f" ELSE {sql_literal(r.name)} END"
            for r in rules if r.severity == severity
        ]
        if not items:
            return "CAST([] AS VARCHAR[])"
        return f"list_filter([{', '.join(items)}], lambda x: x IS NOT NULL)"
