"""PipelineOrchestrator: builds each stage's settings from the config and the environment, and runs
the stages in order. It holds no stage logic: each stage only reads what the previous one committed
to the lake, so any of them can also run alone."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from lake.errors import ConfigError
from lake.formats import ChunkSpec, ManifestEvent
from lake.storage import Lake, LocalLake, open_lake
from schemas.config import HistConfig, JobConfig
from schemas.mappings import MappingConfig, load_mappings, load_rules, rules_version
from schemas.secrets import Secret
from stages.extract.batch import BatchPolicy, Via
from stages.extract.databento_adapter import DatabentoAdapter
from stages.extract.runner import CostPolicy, ExtractReport, run_extract
from stages.load.loader import LoadResult
from stages.load.runner import LoadReport, LoadSettings, run_load
from stages.relay import Relay, run_relays
from stages.transform.runner import TransformReport, TransformSettings, run_transform, stale

DEFAULT_LAKE = "lake_data"
T = TypeVar("T")


@dataclass(frozen=True)
class ProgressHooks:
    """Called after each committed chunk of each stage (progress bars, metrics)."""

    extract: Callable[[ManifestEvent], None] | None = None
    transform: Callable[[ManifestEvent], None] | None = None
    load: Callable[[LoadResult], None] | None = None


@dataclass
class PipelineOrchestrator:
    config: HistConfig
    lake: Lake
    mapping: MappingConfig
    scheduler: str | None = None  # a Dask scheduler: extract and transform chunks run on its cluster

    @classmethod
    def from_config(cls, config: HistConfig, lake_url: str | None = None, scheduler: str | None = None
                    ) -> PipelineOrchestrator:
        """The lake is `lake_url`, HIST_LAKE or ./lake_data; the scheduler `scheduler`, HIST_SCHEDULER or none."""
        lake = open_lake(lake_url or default_lake())
        scheduler = scheduler or os.environ.get("HIST_SCHEDULER") or None
        if scheduler and isinstance(lake, LocalLake):
            raise ConfigError(f"--scheduler {scheduler}: the lake {lake.url} is a local folder the cluster's workers "
                              "cannot share; put it on object storage (HIST_LAKE=s3://bucket/prefix)")
        return cls(config, lake, load_mappings(config.mapping_config_path), scheduler)

    def plan(self, job: JobConfig, force: bool = False) -> list[ChunkSpec]:
        """The job's chunks, under the schema's own name (an alias such as ohlcv.1m plans ohlcv-1m),
        with what the lake holds already in place of the parts of windows it covers (with `force`, as
        if it held nothing: every chunk is bought again)."""
        job = job.model_copy(update={"schema_": self.mapping.canonical(job.schema_)})
        committed = () if force else (e.chunk for e in self.lake.manifest().latest("extract").values())
        return self.adapter.plan(job, self.mapping.schema_mapping(job.schema_).source_schema, committed)

    @cached_property
    def adapter(self) -> DatabentoAdapter:
        gateway = os.environ.get("DATABENTO_GATEWAY") or self.config.api.gateway
        return DatabentoAdapter.from_environment(self.config.api.key_env_var, gateway, self.config.retry_policy)

    def extract(self, job: JobConfig, force: bool = False, cost: CostPolicy | None = None,
                on_chunk: Callable[[ManifestEvent], None] | None = None, via: Via = "auto") -> ExtractReport:
        cost = cost or CostPolicy(max_cost_usd=self.config.max_cost_usd)
        batch = BatchPolicy(via, self.config.batch_above_bytes, self.config.batch_poll_seconds)
        return run_extract(self.adapter, self.lake, self.plan(job, force), max_concurrency=self.config.max_concurrency,
                           force=force, cost=cost, on_chunk=on_chunk, batch=batch, scheduler=self.scheduler)

    def transform_settings(self) -> TransformSettings:
        rule_paths = self.config.validation_schema_paths
        return TransformSettings(
            lake=self.lake, mapping=self.mapping, rules=load_rules(rule_paths),
            rules_version=rules_version(self.mapping, rule_paths),
            batch_records=self.config.transform_batch_records, workers=self.config.transform_workers,
            scheduler=self.scheduler,
        )

    def transform(self, chunk_ids: set[str] | None = None, **options: Any) -> TransformReport:
        """Options: retry_failed, redo, should_stop, on_chunk (see run_transform)."""
        return run_transform(self.transform_settings(), chunk_ids, **options)

    def load(self, chunk_ids: set[str] | None = None, dsn: Secret | None = None, **options: Any) -> LoadReport:
        """Options: should_stop, on_chunk (see run_load)."""
        settings = LoadSettings(self.lake, self.mapping, dsn or database_url(), self.config.load_batch_rows,
                                self.config.load_workers)
        return run_load(settings, chunk_ids, **options)

    def stale_chunks(self) -> set[str]:
        """Chunks transformed under another mapping or rules version than the config's current one."""
        return stale(self.lake.manifest(), self.transform_settings().rules_version)

    def rederive(self, hooks: ProgressHooks | None = None) -> tuple[set[str], TransformReport, LoadReport]:
        """Transform every stale chunk again from the raw bytes already in the lake (no download), then
        load them: the loader replaces their rows."""
        hooks = hooks or ProgressHooks()
        chunks = self.stale_chunks()
        transformed = self.transform(chunks, redo=frozenset(chunks), retry_failed=True, on_chunk=hooks.transform)
        return chunks, transformed, self.load(chunks, on_chunk=hooks.load)

    def ingest(self, job: JobConfig, force: bool = False, cost: CostPolicy | None = None,
               hooks: ProgressHooks | None = None, via: Via = "auto"
               ) -> tuple[ExtractReport, TransformReport | None, LoadReport | None]:
        """All three stages for one job, overlapped (see stages/relay.py) and limited to that job's
        chunks (only the plan on a dry run)."""
        hooks = hooks or ProgressHooks()
        if cost is not None and cost.dry_run:
            return self.extract(job, force=force, cost=cost, on_chunk=hooks.extract, via=via), None, None
        chunk_ids = {c.chunk_id for c in self.plan(job, force)}
        stop = threading.Event()

        def load(ids: set[str], _committed: Callable[[str], None], should_stop: Callable[[], bool]) -> LoadReport:
            return self.load(ids, should_stop=should_stop, on_chunk=hooks.load)

        def transform(ids: set[str], committed: Callable[[str], None], should_stop: Callable[[], bool]
                      ) -> TransformReport:
            return self.transform(ids, should_stop=should_stop,
                                  on_chunk=_both(hooks.transform, lambda e: committed(e.chunk_id)))

        loading = Relay("load", load, LoadReport(), LoadReport.absorb, chunk_ids, stop)
        transforming = Relay("transform", transform, TransformReport(), TransformReport.absorb, chunk_ids, stop,
                             downstream=loading)
        extracted = run_relays([transforming, loading], lambda send: self.extract(
            job, force=force, cost=cost, on_chunk=_both(hooks.extract, lambda e: send(e.chunk_id)), via=via))
        return extracted, transforming.report, loading.report


def _both(first: Callable[[T], None] | None, second: Callable[[T], None]) -> Callable[[T], None]:
    def call(value: T) -> None:
        if first is not None:
            first(value)
        second(value)
    return call


def default_lake() -> str:
    """HIST_LAKE (a folder or s3://bucket/prefix), or ./lake_data."""
    return os.environ.get("HIST_LAKE") or DEFAULT_LAKE


def database_url() -> Secret:
    url = os.environ.get("HIST_DATABASE_URL", "")
    if not url:
        raise ConfigError("HIST_DATABASE_URL is not set: point it at a TimescaleDB database "
                          "(postgresql://user@host:port/dbname)")
    return Secret(url)
