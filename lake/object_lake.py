"""A lake on S3-compatible object storage (AWS S3, MinIO, Ceph RGW, R2) through fsspec's s3fs.

Endpoint and credentials come from the standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) or the usual AWS config files, as for any AWS tool. There
is no rename and no flock on a bucket: data objects are written whole under their content address,
manifest events and chunk leases are created conditionally (If-None-Match: *), and in-flight work
stays on local disk under HIST_SCRATCH. Storage calls that fail for a transient reason (endpoint
down, connection reset, 5xx) are retried for `HIST_S3_RETRY_SECONDS`, then fail with one line."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from lake.errors import ConfigError, TransientError
from lake.formats import Stage
from lake.locks import try_lock
from lake.storage import Lake

if TYPE_CHECKING:
    import duckdb

    from lake.leases import Leases
    from lake.manifest import Manifest

log = logging.getLogger(__name__)
T = TypeVar("T")
NOT_TRANSIENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


class LakeUnavailable(TransientError):
    """The object store did not answer within the retry budget."""


def _transient(exc: BaseException) -> bool:
    """Connection failures, timeouts and the store's 5xx (s3fs raises those as OSError); not missing
    credentials, a missing object or a refusal."""
    import botocore.exceptions

    if isinstance(exc, NOT_TRANSIENT):
        return False
    return isinstance(exc, OSError | botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
                      | TimeoutError)


class ObjectLake(Lake):
    def __init__(self, url: str, fs: Any, root: str, scratch_root: Path, retry_seconds: float) -> None:
        super().__init__(url, fs, root, scratch_root)
        self.retry_seconds = retry_seconds

    @classmethod
    def from_url(cls, url: str) -> ObjectLake:
        try:
            import s3fs
        except ImportError as exc:
            raise ConfigError(f"lake {url}: an s3:// lake needs the cluster extra "
                              "(pip install -e '.[cluster]')") from exc
        root = url.removeprefix("s3://").strip("/")
        if not root:
            raise ConfigError(f"lake {url}: name a bucket, as in s3://bucket/prefix")
        scratch = os.environ.get("HIST_SCRATCH") or str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hist" / "scratch"
            / hashlib.sha256(url.encode()).hexdigest()[:16])
        # botocore and s3fs would each retry again inside every attempt: one budget (`call`) is clearer
        fs = s3fs.S3FileSystem(skip_instance_cache=True, config_kwargs={"retries": {"max_attempts": 1}})
        fs.retries = 1
        return cls(url, fs, root, Path(scratch), float(os.environ.get("HIST_S3_RETRY_SECONDS", "60")))

    def call(self, what: str, relative: str, operation: Callable[[], T]) -> T:
        """Run one storage call, retrying transient failures within the lake's retry budget."""
        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("lake %s: %s %s failed (%s); retrying", self.url, what, relative, _one_line(exc),
                        extra={"event": "retried", "stage": "lake", "attempt": state.attempt_number})

        retrying = Retrying(retry=retry_if_exception(_transient), stop=stop_after_delay(self.retry_seconds),
                            wait=wait_exponential(multiplier=0.2, max=5), before_sleep=note, reraise=True)
        import botocore.exceptions

        try:
            return retrying(operation)
        except botocore.exceptions.BotoCoreError as exc:  # no credentials, a bad endpoint url, ...
            if not _transient(exc):
                raise ConfigError(f"lake {self.url}: {what} {relative}: {_one_line(exc)}") from exc
            raise LakeUnavailable(self._still_failing(what, relative, exc)) from exc
        except Exception as exc:
            if _transient(exc):
                raise LakeUnavailable(self._still_failing(what, relative, exc)) from exc
            raise

    def _still_failing(self, what: str, relative: str, exc: BaseException) -> str:
        return f"lake {self.url}: {what} {relative} still failing after {self.retry_seconds:g} s: {_one_line(exc)}"

    def exists(self, relative: str) -> bool:
        return self.call("exists", relative, lambda: bool(self.fs.exists(self.key(relative))))

    def read_bytes(self, relative: str) -> bytes:
        return self.call("read", relative, lambda: bytes(self.fs.cat_file(self.key(relative))))

    def put(self, temp: Path, relative: str) -> None:
        """One PUT (multipart above s3fs's part size, completed conditionally): the object appears
        whole or not at all. Content-addressed, so an object already there holds these very bytes."""
        def upload() -> None:
            with suppress(FileExistsError):
                self.fs.put_file(str(temp), self.key(relative), mode="create")
        self.call("write", relative, upload)

    def create(self, relative: str, data: bytes) -> bool:
        """Create an object only if there is none (If-None-Match: *): False when another writer has."""
        def create_once() -> bool:
            try:
                self.fs.pipe_file(self.key(relative), data, mode="create")
            except FileExistsError:
                return False
            return True
        return self.call("create", relative, create_once)

    def delete(self, relatives: list[str]) -> None:
        if relatives:
            self.call("delete", relatives[0], lambda: self.fs.rm([self.key(r) for r in relatives]))

    def list_after(self, prefix: str, after: str = "") -> list[str]:
        """Keys under `prefix` sorted, those after `after` only (S3 lists in key order, so a reader of
        an append-only folder lists only what is new)."""
        def listing() -> list[str]:
            bucket, _, base = self.key(prefix).partition("/")
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": base + "/"}
            if after:
                kwargs["StartAfter"] = f"{base}/{after}"
            keys: list[str] = []
            while True:
                page = self.fs.call_s3("list_objects_v2", **kwargs)
                keys += [item["Key"].removeprefix(base + "/") for item in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    return keys
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return self.call("list", prefix, listing)

    def read_many(self, relatives: list[str]) -> dict[str, bytes]:
        """Several small objects at once (s3fs fetches them concurrently)."""
        if not relatives:
            return {}
        keys = {self.key(r): r for r in relatives}
        found = self.call("read", f"{len(keys)} objects under {relatives[0].rsplit('/', 1)[0]}",
                          lambda: self.fs.cat(list(keys)))
        return {keys[k]: bytes(v) for k, v in found.items()}

    def local_file(self, relative: str, scratch: Path) -> Path:
        target = scratch / relative.rsplit("/", 1)[-1]
        self.call("read", relative, lambda: self.fs.get_file(self.key(relative), str(target)))
        return target

    def uri(self, relative: str) -> str:
        return f"s3://{self.key(relative)}"

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        con.register_filesystem(self.fs)

    @cached_property
    def leases(self) -> Leases:
        from lake.leases import Leases

        return Leases(self, float(os.environ.get("HIST_LEASE_SECONDS", "30")))

    def lock(self, stage: Stage, chunk_id: str) -> AbstractContextManager[bool]:
        """The local lock (other processes sharing this scratch folder), then the chunk's lease in the
        bucket (processes on other machines)."""
        return self.leases.hold(stage, chunk_id, local=try_lock(self.lock_file(stage, chunk_id)))

    def _new_manifest(self) -> Manifest:
        from lake.object_manifest import ObjectManifest

        return ObjectManifest(self)


def _one_line(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
    return text.splitlines()[0] if text else type(exc).__name__
