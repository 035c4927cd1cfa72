"""TimescaleLoader: one transformed chunk into its hypertable per transaction, by binary COPY.

Idempotency lives in the database: `hist_chunk_loads` records which standardized file each chunk
holds, written in the same transaction as the rows. Reloading the same file is a no-op; a new file
for the chunk (a forced re-extract, a rules change) replaces the chunk's rows. When the chunk's
window overlaps a chunk already loaded into the same table from the same dataset (of any schema that
lands there: statistics and statistics.daily_summary, say), rows go through a staging
table and only records not yet present (by the table's identity columns) are inserted, so every
record is stored exactly once while distinct records sharing an instrument and timestamp all stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import pgpq
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from lake.formats import ManifestEvent
from lake.storage import Lake
from schemas.mappings import MappingConfig, RecordKind

log = logging.getLogger(__name__)
TIME_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class LoadResult:
    chunk_id: str
    rows: int
    action: str  # "loaded" | "replaced" | "skipped"


class TimescaleLoader:
    def __init__(self, conn: psycopg.Connection, lake: Lake, mapping: MappingConfig,
                 batch_rows: int = 100_000) -> None:
        self.conn = conn
        self.lake = lake
        self.mapping = mapping
        self.batch_rows = batch_rows

    def load_chunk(self, event: ManifestEvent) -> LoadResult:
        chunk = event.chunk
        kind = self.mapping.kind_for(chunk.schema_)
        standardized = event.file("standardized")
        source_sha = event.standardized_sha256
        with self.conn.transaction():
            self._lock_days(kind.table, event)
            previous = self.conn.execute(
                "SELECT load_id, source_sha256 FROM hist_chunk_loads WHERE chunk_id = %s FOR UPDATE",
                (chunk.chunk_id,),
            ).fetchone()
            if previous and previous[1] == source_sha:
                return LoadResult(chunk.chunk_id, 0, "skipped")
            if previous:
                load_id = previous[0]
                self._delete_chunk_rows(kind, load_id, event)
            else:
                load_id = self.conn.execute(
                    "INSERT INTO hist_chunk_loads (chunk_id, table_name, dataset, schema, window_start,"
                    " window_end, source_sha256, transform_event, rows_loaded)"
                    " VALUES (%s, %s, %s, %s, %s, %s, '', '', 0) RETURNING load_id",
                    (chunk.chunk_id, kind.table, chunk.dataset, chunk.schema_, chunk.start, chunk.end),
                ).fetchone()[0]  # type: ignore[index]
            rows = 0
            if standardized is not None:
                overlapping = self._overlaps_loaded(kind, event)
                rows = self._copy(kind, event, load_id, dedupe=overlapping)
            self.conn.execute(
                "UPDATE hist_chunk_loads SET source_sha256 = %s, transform_event = %s, rows_loaded = %s,"
                " loaded_at = now() WHERE chunk_id = %s",
                (source_sha, event.event_id, rows, chunk.chunk_id),
            )
        action = "replaced" if previous else "loaded"
        log.info("%s chunk %s: %d rows into %s", action, chunk.chunk_id, rows, kind.table,
                 extra={"event": "chunk_committed", "stage": "load", "chunk_id": chunk.chunk_id, "rows": rows})
        return LoadResult(chunk.chunk_id, rows, action)

    def _lock_days(self, table: str, event: ManifestEvent) -> None:
        """Serialize loads whose windows share a day of the same table and dataset, so the overlap
        check and the insert see each other; disjoint chunks load in parallel."""
        day = event.chunk.start
        while day < event.chunk.end:
            key = f"{table}/{event.chunk.dataset}/{day:%Y-%m-%d}"
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            day += timedelta(days=1)

    def _overlaps_loaded(self, kind: RecordKind, event: ManifestEvent) -> bool:
        chunk = event.chunk
        row = self.conn.execute(
            "SELECT 1 FROM hist_chunk_loads WHERE table_name = %s AND dataset = %s"
            " AND chunk_id <> %s AND window_start < %s AND window_end > %s AND rows_loaded > 0 LIMIT 1",
            (kind.table, chunk.dataset, chunk.chunk_id, chunk.end, chunk.start),
        ).fetchone()
        return row is not None

    def _delete_chunk_rows(self, kind: RecordKind, load_id: int, event: ManifestEvent) -> None:
        self.conn.execute(
            sql.SQL("DELETE FROM {table} WHERE load_id = %s AND {time} >= %s AND {time} < %s").format(
                table=sql.Identifier(kind.table), time=sql.Identifier(kind.time_column)),
            (load_id, *_with_margin(event)),
        )

    def _copy(self, kind: RecordKind, event: ManifestEvent, load_id: int, dedupe: bool) -> int:
        standardized = event.file("standardized")
        assert standardized is not None
        with self.lake.open_input(standardized.path) as source:
            # no read-ahead: a chunk of any size streams through one row group at a time
            parquet = pq.ParquetFile(source, pre_buffer=False)
            names = [*parquet.schema_arrow.names, "load_id"]
            target = sql.Identifier(kind.table)
            if dedupe:
                self.conn.execute(sql.SQL("CREATE TEMP TABLE hist_staging (LIKE {t}) ON COMMIT DROP").format(
                    t=target))
                target = sql.Identifier("hist_staging")
            rows = self._copy_rows(parquet, target, names, load_id)
        if dedupe:
            rows = self._insert_new_from_staging(kind, names, event)
        return rows

    def _copy_rows(self, parquet: pq.ParquetFile, target: sql.Identifier, names: list[str], load_id: int) -> int:
        columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        rows = 0
        encoder: pgpq.ArrowToPostgresBinaryEncoder | None = None
        with self.conn.cursor() as cur, cur.copy(
            sql.SQL("COPY {t} ({c}) FROM STDIN WITH (FORMAT BINARY)").format(t=target, c=columns)
        ) as copy:
            for batch in parquet.iter_batches(batch_size=self.batch_rows, use_threads=False):
                batch = batch.append_column("load_id", pa.repeat(pa.scalar(load_id, pa.int32()), batch.num_rows))
                if encoder is None:
                    encoder = pgpq.ArrowToPostgresBinaryEncoder(batch.schema)
                    copy.write(encoder.write_header())
                copy.write(encoder.write_batch(batch))
                rows += batch.num_rows
            if encoder is not None:
                copy.write(encoder.finish())
        return rows

    def _insert_new_from_staging(self, kind: RecordKind, names: list[str], event: ManifestEvent) -> int:
        # equality on the indexed columns finds candidates; IS NOT DISTINCT FROM compares the rest,
        # NULLs included
        indexed = [sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in ("instrument_id", kind.time_column)]
        match = sql.SQL(" AND ").join([*indexed, *(
            sql.SQL("t.{c} IS NOT DISTINCT FROM s.{c}").format(c=sql.Identifier(c))
            for c in (*kind.identity, "dup_ordinal"))])
        cur = self.conn.execute(
            sql.SQL(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM hist_staging s WHERE NOT EXISTS"
                " (SELECT 1 FROM {table} t WHERE {match} AND t.{time} >= %s AND t.{time} < %s)"
            ).format(
                table=sql.Identifier(kind.table),
                cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
                match=match,
                time=sql.Identifier(kind.time_column),
            ),
            _with_margin(event),
        )
        return cur.rowcount


def _with_margin(event: ManifestEvent) -> tuple[datetime, datetime]:
    """The chunk's window widened by a day: requests filter on the index time (ts_recv for most
    schemas), while tables are partitioned on ts_event, which may fall just before the window."""
    return event.chunk.start - TIME_MARGIN, event.chunk.end + TIME_MARGIN
