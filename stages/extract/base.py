"""The adapter contract: plan a job into chunks, and fetch one chunk's raw bytes to a file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from lake.formats import ChunkSpec
from schemas.config import JobConfig


class BaseAdapter(ABC):
    @abstractmethod
    def plan(self, job: JobConfig, source_schema: str) -> list[ChunkSpec]:
        """Split a job into chunk requests, in time order."""

    @abstractmethod
    def fetch(self, chunk: ChunkSpec, destination: Path) -> int:
        """Write the chunk's raw bytes to `destination` (which must not exist) and return the number
        of records in it; raise TransientError or TerminalError on failure."""

    def raw_symbols(self, chunk: ChunkSpec, raw_file: Path) -> dict[str, list[dict[str, str]]] | None:
        """For requests whose symbols are not contracts (parent, continuous): each instrument id's
        raw symbol intervals, {id: [{d0, d1, s}]}; None when the data names contracts already."""
        return None
