"""The adapter contract: plan a job into chunks, and fetch one chunk's raw bytes to a file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lake.errors import TerminalError
from lake.formats import ChunkSpec
from schemas.config import JobConfig


@dataclass(frozen=True)
class BatchFile:
    """One data file of a finished batch job, as the vendor lists it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Downloaded:
    """A verified batch file on disk: its records and the [start, end) window its metadata names."""

    path: Path
    records: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class CostEstimate:
    """What downloading a set of chunks will cost, as the vendor quotes it."""

    chunks: int = 0
    records: int = 0
    bytes: int = 0
    usd: float = 0.0


class BaseAdapter(ABC):
    @abstractmethod
    def plan(self, job: JobConfig, source_schema: str, committed: Iterable[ChunkSpec] = ()) -> list[ChunkSpec]:
        """Split a job into chunk requests, in time order: the `committed` chunks that hold part of it,
        and requests for the rest."""

    @abstractmethod
    def estimate(self, chunks: list[ChunkSpec]) -> CostEstimate:
        """Ask the vendor what downloading `chunks` costs, without downloading anything."""

    @abstractmethod
    def fetch(self, chunk: ChunkSpec, destination: Path) -> int:
        """Write the chunk's raw bytes to `destination` (which must not exist) and return the number
        of records in it; raise TransientError or TerminalError on failure."""

    def submit_batch(self, request: ChunkSpec, known: Collection[str] = ()) -> str:
        """Submit `request` as a batch job (split into files of the planner's windows), or find the job
        a lost submit made (not among the `known` job ids); its id."""
        raise TerminalError(f"{type(self).__name__} has no batch API")

    def batch_state(self, job_id: str) -> str:
        """received, queued, processing, done or expired."""
        raise TerminalError(f"{type(self).__name__} has no batch API")

    def batch_files(self, job_id: str) -> list[BatchFile]:
        """The data files of a finished job."""
        raise TerminalError(f"{type(self).__name__} has no batch API")

    def download_batch_file(self, job_id: str, file: BatchFile, folder: Path) -> Downloaded:
        """Download `file` under `folder` (a partial file there is resumed) and check its sha256."""
        raise TerminalError(f"{type(self).__name__} has no batch API")

    def needs_raw_symbols(self, chunk: ChunkSpec) -> bool:
        """Whether the response's metadata leaves instruments without their raw symbol (requests by
        parent, continuous, smart or instrument id, and ALL_SYMBOLS)."""
        return False

    def raw_symbols(self, chunk: ChunkSpec, raw_file: Path) -> dict[str, list[dict[str, str]]]:
        """Each instrument id in `raw_file`: its raw symbol intervals, {id: [{d0, d1, s}]}."""
        return {}
