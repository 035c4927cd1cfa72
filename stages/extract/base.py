"""The adapter contract: plan a job into chunks, and fetch one chunk's raw bytes to a file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from lake.formats import ChunkSpec
from schemas.config import JobConfig


@dataclass(frozen=True)
class CostEstimate:
    """What downloading a set of chunks will cost, as the vendor quotes it."""

    chunks: int = 0
    records: int = 0
    bytes: int = 0
    usd: float = 0.0


class BaseAdapter(ABC):
    @abstractmethod
    def plan(self, job: JobConfig, source_schema: str) -> list[ChunkSpec]:
        """Split a job into chunk requests, in time order."""

    @abstractmethod
    def estimate(self, chunks: list[ChunkSpec]) -> CostEstimate:
        """Ask the vendor what downloading `chunks` costs, without downloading anything."""

    @abstractmethod
    def fetch(self, chunk: ChunkSpec, destination: Path) -> int:
        """Write the chunk's raw bytes to `destination` (which must not exist) and return the number
        of records in it; raise TransientError or TerminalError on failure."""

    def needs_raw_symbols(self, chunk: ChunkSpec) -> bool:
        """Whether the response's metadata leaves instruments without their raw symbol (requests by
        parent, continuous, smart or instrument id, and ALL_SYMBOLS)."""
        return False

    def raw_symbols(self, chunk: ChunkSpec, raw_file: Path) -> dict[str, list[dict[str, str]]]:
        """Each instrument id in `raw_file`: its raw symbol intervals, {id: [{d0, d1, s}]}."""
        return {}
