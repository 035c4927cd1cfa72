"""Every on-disk record of the lake, typed in one place: stage names, chunk identity, manifest events.

Times are UTC. A chunk window is [start, end): inclusive start, exclusive end, as in Databento's API.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MANIFEST_FORMAT_VERSION = 1

Stage = Literal["extract", "transform", "load"]
EventStatus = Literal["committed", "failed", "submitted"]  # submitted: a batch job asked for, not yet in the lake
FileRole = Literal["raw", "symbology", "standardized", "quarantine"]


class ChunkSpec(BaseModel):
    """One request to the vendor: a dataset, schema, symbol set and a UTC-day-aligned window.

    `schema_` is what the user asked for (ohlcv-5m, say); `source_schema` is what is requested from
    Databento for it (ohlcv-1m). The chunk id depends only on the request, so a rerun finds its chunks.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    dataset: str
    schema_: str = Field(alias="schema")
    source_schema: str
    stype_in: str
    symbols: tuple[str, ...]
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def chunk_id(self) -> str:
        digest = _digest([self.schema_, self.source_key])
        return f"{self.schema_}-{self.start:%Y%m%d}-{self.end:%Y%m%d}-{digest}"

    @property
    def source_key(self) -> str:
        """What is requested from the vendor: chunks of ohlcv-1m and ohlcv-5m over the same symbols
        and window share it, so the bytes are bought once."""
        return _digest([self.dataset, self.source_schema, self.stype_in, sorted(self.symbols),
                        self.start.isoformat(), self.end.isoformat()])

    @property
    def start_ns(self) -> int:
        return to_ns(self.start)

    @property
    def end_ns(self) -> int:
        return to_ns(self.end)


def _digest(parts: list[object]) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()[:12]


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (exact to the microsecond)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ns(nanos: int) -> datetime:
    """The aware UTC datetime of nanoseconds since the epoch (to the microsecond)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)


class FileRef(BaseModel):
    """A committed file, relative to the lake root, with the hash it had when committed."""

    model_config = ConfigDict(frozen=True)

    role: FileRole
    path: str
    sha256: str
    bytes: int
    records: int


class ManifestEvent(BaseModel):
    """One line of the manifest log: a stage committed (or failed to commit) its output for a chunk.

    `input_sha256` names the files consumed, so a downstream stage knows its output is stale when an
    upstream file is replaced (a forced re-extract); `rules_version` says which mapping and rules a
    transform ran under, so a change of either shows the chunk as stale. An extract event with
    `symbology_pending` holds bytes already bought whose raw symbols are still to be resolved:
    transform waits for the event that adds the symbology file, and a rerun resolves without
    downloading again. A `submitted` extract event records a batch job before its first poll, so a
    run killed while waiting polls the same job again instead of submitting (and paying) twice.
    `lease` (an object-store lake only) lets readers refuse an event that landed after a `LeaseFence`
    for a newer lease on its chunk.
    """

    model_config = ConfigDict(frozen=True)

    format_version: int = MANIFEST_FORMAT_VERSION
    event_id: str
    stage: Stage
    status: EventStatus
    chunk_id: str
    chunk: ChunkSpec
    files: tuple[FileRef, ...] = ()
    input_sha256: tuple[str, ...] = ()
    records: dict[str, int] = Field(default_factory=dict)
    rules_version: str | None = None
    error: str | None = None
    symbology_pending: bool = False  # extract: raw bytes committed, raw symbols not resolved yet
    batch_job: str | None = None  # extract: the Databento batch job that delivers (or delivered) these bytes
    lease: int | None = None  # object-store lake: the generation of the chunk lease its writer held it under
    created_at: datetime

    def file(self, role: FileRole) -> FileRef | None:
        return next((f for f in self.files if f.role == role), None)

    @property
    def standardized_sha256(self) -> str:
        """What the load ledger records for this transform: its standardized file's hash, or
        'empty' for a chunk with no rows."""
        ref = self.file("standardized")
        return ref.sha256 if ref else "empty"


class LeaseFence(BaseModel):
    """Written into an object-store manifest by a worker that took over a chunk's lapsed lease, before
    it works on the chunk: every event for the same stage and chunk that comes after it in the manifest
    and was made under an older lease is refused by readers. The lapsed holder may not know yet that it
    lost the lease (a stall, a renewal still being retried, its clock) and create an event after the
    takeover; it is refused, so the chunk the new holder found undone has only the new holder's commit."""

    model_config = ConfigDict(frozen=True)

    format_version: int = MANIFEST_FORMAT_VERSION
    fence_id: str  # a nonce: a retried create recognises its own object
    stage: Stage
    chunk_id: str
    lease: int  # the generation the new holder took the lease at
    created_at: datetime
