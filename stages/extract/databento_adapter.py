"""DatabentoAdapter: the official `databento` client, one chunk at a time, streamed to disk."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import databento
import numpy as np
import pandas as pd
from databento.common.error import BentoWarning
from tenacity import RetryCallState

from lake.atomic import sha256_file
from lake.errors import TerminalError, TransientError
from lake.formats import ChunkSpec, from_ns
from schemas.config import MAX_SYMBOLS_PER_REQUEST, JobConfig, RetryPolicy
from schemas.records import DatabentoRecord, model_for_schema
from schemas.secrets import Secret
from stages.extract.base import BaseAdapter, BatchFile, CostEstimate, Downloaded
from stages.extract.batch import JOB_LIFETIME
from stages.extract.errors import classify
from stages.extract.planner import batch_split, merge_adjacent, plan_chunks
from stages.extract.retry import with_retries

log = logging.getLogger(__name__)
COUNT_BATCH = 250_000  # records decoded at a time to count and check a download: bounded memory
ALL_SYMBOLS = "ALL_SYMBOLS"
T = TypeVar("T")


class DatabentoAdapter(BaseAdapter):
    def __init__(self, key: Secret, gateway: str | None, retry_policy: RetryPolicy) -> None:
        if not key:
            raise TerminalError("no Databento API key: set the variable named by api.key_env_var "
                                "(DATABENTO_API_KEY by default)")
        self._key = key
        self.retry_policy = retry_policy
        self._gateway = gateway
        self._key_env_var: str | None = None
        if gateway:
            self.client = databento.Historical(key=key.reveal(), gateway=gateway)
        else:
            self.client = databento.Historical(key=key.reveal())

    @classmethod
    def from_environment(cls, key_env_var: str, gateway: str | None, retry_policy: RetryPolicy) -> DatabentoAdapter:
        """The adapter for the API key in the environment variable `key_env_var`."""
        adapter = cls(Secret(os.environ.get(key_env_var, "")), gateway, retry_policy)
        adapter._key_env_var = key_env_var
        return adapter

    def __reduce__(self) -> tuple[Callable[..., DatabentoAdapter], tuple[str, str | None, RetryPolicy]]:
        """To a cluster worker the adapter travels as the name of its key's variable: the worker reads
        the key from its own environment, so the key never crosses the network."""
        if self._key_env_var is None:
            raise TypeError("an adapter made from a literal key cannot be sent to a cluster worker")
        return DatabentoAdapter.from_environment, (self._key_env_var, self._gateway, self.retry_policy)

    def plan(self, job: JobConfig, source_schema: str, committed: Iterable[ChunkSpec] = ()) -> list[ChunkSpec]:
        return plan_chunks(job, source_schema, committed)

    def estimate(self, chunks: list[ChunkSpec]) -> CostEstimate:
        """One get_cost, get_record_count and get_billable_size per run of adjacent chunks of the same
        request (metadata calls are rate-limited to 20/s, so a year of day chunks is a few calls)."""
        usd, records, size = 0.0, 0, 0
        meta = self.client.metadata
        for params in merged_requests(chunks):
            cost, count, billable = self._call(None, "metadata cost", lambda p=params: (  # type: ignore[misc]
                float(meta.get_cost(**p)), int(meta.get_record_count(**p)), int(meta.get_billable_size(**p))))
            usd, records, size = usd + cost, records + count, size + billable
        return CostEstimate(chunks=len(chunks), records=records, bytes=size, usd=usd)

    def fetch(self, chunk: ChunkSpec, destination: Path) -> int:
        def attempt() -> int:
            destination.unlink(missing_ok=True)  # the client refuses an existing path
            try:
                store = self.client.timeseries.get_range(**request_params(chunk), path=destination)
            except Exception:
                destination.unlink(missing_ok=True)
                raise
            try:
                return count_records(store)
            except Exception as exc:  # a body cut off midway: worth another try
                destination.unlink(missing_ok=True)
                raise TransientError(f"downloaded body does not decode: {exc}") from None

        return self._call(chunk, "timeseries.get_range", attempt)

    @staticmethod
    def _on_retry(chunk: ChunkSpec | None, call: str) -> Callable[[RetryCallState], None]:
        chunk_id = chunk.chunk_id if chunk else None

        def on_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: %s attempt %d failed (%s); retrying", f"chunk {chunk_id}" if chunk_id else "batch", call,
                        state.attempt_number, exc, extra={"event": "retried", "stage": "extract",
                                                          "chunk_id": chunk_id, "attempt": state.attempt_number})
        return on_retry


    def iter_records(self, job: JobConfig, source_schema: str) -> Iterator[DatabentoRecord]:
        """Validated Pydantic records, chunk by chunk, for library users (the pipeline's bulk path
        never builds them). An invalid record raises pydantic.ValidationError naming the field."""
        model = model_for_schema(source_schema)
        for chunk in self.plan(job, source_schema):
            store = self._call(chunk, "timeseries.get_range",
                               lambda c=chunk: self.client.timeseries.get_range(**request_params(c)))  # type: ignore[misc]
            for record in store:
                yield model.from_dbn(record)

    def submit_batch(self, request: ChunkSpec, known: Collection[str] = ()) -> str:
        """Every try first looks for a live job of the last 30 days, not among the `known` ones, with
        these very parameters (list_jobs, in the short form Databento answers now, then each one's
        details): a submit whose answer was lost (a timeout, a reset, a 5xx after the job was made) is
        found, not paid twice."""
        params = batch_params(request)

        def find_or_submit() -> str:
            listed = self.client.batch.list_jobs(states=None, since=datetime.now(UTC) - JOB_LIFETIME)
            candidates = [str(j["id"]) for j in listed if j.get("state") != "expired" and str(j["id"]) not in known]
            found = next((job_id for job_id in reversed(candidates)  # the newest first
                          if same_request(self.client.batch.get_job_details(job_id), params)), None)
            if found is not None:
                log.info("batch job %s already asks for %s: adopted, not submitted again", found, request.chunk_id,
                         extra={"event": "batch_adopted", "stage": "extract", "chunk_id": request.chunk_id})
                return found
            return str(self.client.batch.submit_job(**params)["id"])

        return self._call(request, "batch.submit_job", find_or_submit)

    def batch_state(self, job_id: str) -> str:
        return str(self._call(None, "batch.get_job_details",
                              lambda: self.client.batch.get_job_details(job_id))["state"])

    def batch_files(self, job_id: str) -> list[BatchFile]:
        listed = self._call(None, "batch.list_files", lambda: self.client.batch.list_files(job_id))
        return [BatchFile(f["filename"], int(f["size"]), str(f["hash"]).removeprefix("sha256:")) for f in listed
                if str(f["filename"]).endswith(".dbn.zst")]

    def download_batch_file(self, job_id: str, file: BatchFile, folder: Path) -> Downloaded:
        """A whole verified file (left by a run whose commit failed) is not downloaded again; the
        client resumes a partial file with an HTTP Range request; a file whose sha256 differs
        from the listed one is deleted and downloaded again (the client itself only warns). The
        file is then decoded whole, which counts its records."""
        target = folder / job_id / file.name

        def download() -> Downloaded:
            if not (target.exists() and target.stat().st_size == file.size and sha256_file(target) == file.sha256):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", BentoWarning)
                    self.client.batch.download(job_id, output_dir=folder, filename_to_download=file.name)
            if sha256_file(target) != file.sha256:
                target.unlink(missing_ok=True)
                raise TransientError(f"{file.name}: its sha256 differs from the job's file list")
            store = databento.DBNStore.from_file(target)
            end = store.metadata.end
            return Downloaded(target, count_records(store), from_ns(store.metadata.start),
                              from_ns(end) if end is not None else datetime.max.replace(tzinfo=UTC))

        return self._call(None, f"download of {file.name}", download)

    def _call(self, chunk: ChunkSpec | None, call: str, attempt: Callable[[], T]) -> T:
        """One vendor call with the retry policy; errors classified, the key never shown."""
        def classified() -> T:
            try:
                return attempt()
            except Exception as exc:
                raise classify(exc, self._key.reveal()) from None
        return with_retries(self.retry_policy, classified, self._on_retry(chunk, call))

    def needs_raw_symbols(self, chunk: ChunkSpec) -> bool:
        return chunk.stype_in != "raw_symbol" or ALL_SYMBOLS in chunk.symbols

    def raw_symbols(self, chunk: ChunkSpec, raw_file: Path) -> dict[str, list[dict[str, str]]]:
        """symbology.resolve for every instrument id in the data, at most MAX_SYMBOLS_PER_REQUEST
        ids a call (Databento's limit), each call retried on its own."""
        ids = instrument_ids(databento.DBNStore.from_file(raw_file))
        resolved: dict[str, list[dict[str, str]]] = {}
        for start in range(0, len(ids), MAX_SYMBOLS_PER_REQUEST):
            batch = ids[start:start + MAX_SYMBOLS_PER_REQUEST]

            answer = self._call(chunk, "symbology.resolve", lambda b=batch: self.client.symbology.resolve(  # type: ignore[misc]
                dataset=chunk.dataset, symbols=b, stype_in="instrument_id", stype_out="raw_symbol",
                start_date=chunk.start.date(), end_date=chunk.end.date()))
            resolved.update({k: [dict(i) for i in v] for k, v in answer.get("result", {}).items()})
        return resolved


class CostRequest(TypedDict):
    """The parameters the metadata cost endpoints take. Times are ISO 8601 UTC; `end` is exclusive."""

    dataset: str
    symbols: list[str]
    schema: str
    stype_in: str
    start: str
    end: str


class RangeRequest(CostRequest):
    stype_out: str


def cost_params(chunk: ChunkSpec) -> CostRequest:
    return CostRequest(dataset=chunk.dataset, symbols=list(chunk.symbols), schema=chunk.source_schema,
                       stype_in=chunk.stype_in, start=chunk.start.isoformat(), end=chunk.end.isoformat())


def request_params(chunk: ChunkSpec) -> RangeRequest:
    """The get_range parameters for a chunk. Exactly one of stype_in/stype_out is instrument_id."""
    return RangeRequest(**cost_params(chunk),
                        stype_out="raw_symbol" if chunk.stype_in == "instrument_id" else "instrument_id")


class BatchRequest(RangeRequest):
    encoding: str
    compression: str
    split_duration: str


def batch_params(request: ChunkSpec) -> BatchRequest:
    """A batch job's parameters: the request's, as DBN with zstd, in files of the planner's windows."""
    return BatchRequest(**request_params(request), encoding="dbn", compression="zstd",
                        split_duration=batch_split(request.source_schema))


def same_request(job: dict[str, Any], params: BatchRequest) -> bool:
    """Whether a listed job asks for exactly `params` (times compared to the nanosecond, symbols as a set)."""
    wanted: dict[str, Any] = dict(params)
    symbols = job.get("symbols")
    listed = set(symbols.split(",") if isinstance(symbols, str) else symbols or [])
    fields = ("dataset", "schema", "stype_in", "stype_out", "encoding", "compression", "split_duration")
    return (all(job.get(f) == wanted[f] for f in fields) and listed == set(wanted["symbols"])
            and all(_ns(job.get(f)) == _ns(wanted[f]) for f in ("start", "end")))


def _ns(moment: object) -> int | None:
    """Nanoseconds since the epoch of an ISO 8601 time (Databento's have nine decimals)."""
    return int(pd.Timestamp(moment).value) if moment else None


def merged_requests(chunks: list[ChunkSpec]) -> list[CostRequest]:
    """The metadata parameters covering `chunks`, adjacent windows of the same request merged."""
    return [cost_params(c) for c in merge_adjacent(chunks)]


def instrument_ids(store: databento.DBNStore) -> list[str]:
    """The distinct instrument ids of a file's records, as symbology.resolve takes them."""
    ids: set[int] = set()
    for batch in store.to_ndarray(count=COUNT_BATCH):
        ids.update(np.unique(batch["instrument_id"]).tolist())
    return [str(i) for i in sorted(ids)]


def count_records(store: databento.DBNStore) -> int:
    """Decode the whole file once: proves it is complete and well-formed, and counts its records."""
    return sum(len(batch) for batch in store.to_ndarray(count=COUNT_BATCH))
