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
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from lake.errors import ConfigError, TransientError
from lake.formats import Stage
from lake.locks import try_lock
from lake.storage import Lake

if TYPE_CHECKING:
    import duckdb

    from lake.object_manifest import ObjectManifest

log = logging.getLogger(__name__)
T = TypeVar("T")
NOT_TRANSIENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
TRANSIENT_STATUS = {408, 409, 429}  # besides 5xx: a timeout, a conflicting concurrent request, throttling


class LakeUnavailable(TransientError):
    """The object store did not answer within the retry budget."""


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of the store's answer behind an s3fs error (s3fs translates botocore's
    ClientError into OSError subclasses and keeps it as the cause)."""
    import botocore.exceptions

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, botocore.exceptions.ClientError):
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return int(status) if status else None
        seen = seen.__cause__ or seen.__context__
    return None


def _precondition_failed(exc: BaseException) -> bool:
    """412 to a conditional create: the object exists (some stores say so without naming the condition,
    which s3fs then raises as a plain OSError rather than FileExistsError)."""
    return isinstance(exc, FileExistsError) or _http_status(exc) == 412


def _transient(exc: BaseException) -> bool:
    """Connection failures, timeouts, throttling and the store's 5xx; not missing credentials, a missing
    object, an existing one or any other refusal (4xx), which retrying cannot change."""
    import botocore.exceptions

    if isinstance(exc, NOT_TRANSIENT):
        return False
    status = _http_status(exc)
    if status is not None:
        return (status >= 500 and status != 501) or status in TRANSIENT_STATUS  # 501: not implemented, ever
    return isinstance(exc, OSError | botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
                      | TimeoutError)


class ObjectLake(Lake):
    _manifest: ObjectManifest

    def __init__(self, url: str, fs: Any, root: str, scratch_root: Path, retry_seconds: float) -> None:
        from lake.leases import Leases

        self.retry_seconds = retry_seconds
        super().__init__(url, fs, root, scratch_root)
        self.leases = Leases(self, float(os.environ.get("HIST_LEASE_SECONDS", "60")))

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
        # one folder per lake, so lakes sharing HIST_SCRATCH never see each other's locks
        scratch = Path(os.environ.get("HIST_SCRATCH") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home()
                                                                / ".cache") / "hist" / "scratch")
        # botocore and s3fs would each retry again inside every attempt: one budget (`call`) is clearer
        fs = s3fs.S3FileSystem(skip_instance_cache=True, config_kwargs={"retries": {"total_max_attempts": 1}})
        fs.retries = 1
        return cls(url, fs, root, scratch / hashlib.sha256(url.encode()).hexdigest()[:16],
                   float(os.environ.get("HIST_S3_RETRY_SECONDS", "30")))

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
        except (FileNotFoundError, FileExistsError):
            raise  # answers, not failures: the callers decide
        except Exception as exc:
            if _transient(exc):
                raise LakeUnavailable(self._still_failing(what, relative, exc)) from exc
            if isinstance(exc, botocore.exceptions.BotoCoreError | OSError):  # no credentials, refused, ...
                raise ConfigError(f"lake {self.url}: {what} {relative}: {_one_line(exc)}") from exc
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
            try:
                self.fs.put_file(str(temp), self.key(relative), mode="create")
            except OSError as exc:
                if not _precondition_failed(exc):
                    raise
        self.call("write", relative, upload)

    def create(self, relative: str, data: bytes) -> bool:
        """Create an object only if there is none (If-None-Match: *): False when another writer has.
        A create whose answer was lost and that is retried meets its own object: `data` always holds
        a nonce (an event id, a lease owner and expiry), so finding the very same bytes means it is
        ours."""
        def create_once() -> bool:
            try:
                self.fs.pipe_file(self.key(relative), data, mode="create")
            except OSError as exc:
                if not _precondition_failed(exc):
                    raise
                return False
            return True
        if self.call("create", relative, create_once):
            return True
        try:
            return self.read_bytes(relative) == data
        except FileNotFoundError:
            return False

    def check_writable(self) -> str:
        """Besides writing: the store must refuse a second create of one key (If-None-Match: *), or two
        writers could both commit the same manifest number or hold the same lease."""
        written = super().check_writable()
        key = f"tmp/doctor-{uuid.uuid4().hex}"
        first, second = self.create(key, b"first"), self.create(key, b"second")
        self.delete([key])
        if not first or second:
            raise ConfigError(f"lake {self.url}: the store does not honour If-None-Match: * on PUT; hist needs "
                              "conditional writes (AWS S3, MinIO, R2 have them)")
        return f"{written}, and refuses a second create of one key"

    def delete(self, relatives: list[str]) -> None:
        if relatives:
            self.call("delete", relatives[0], lambda: self.fs.rm([self.key(r) for r in relatives]))

    def list_after(self, prefix: str, after: str = "", limit: int | None = None) -> list[str]:
        """Keys under `prefix` sorted, those after `after` only (S3 lists in key order, so a reader of
        an append-only folder lists only what is new); at most about `limit` of them."""
        def listing() -> list[str]:
            bucket, _, base = self.key(prefix).partition("/")
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": base + "/"}
            if after:
                kwargs["StartAfter"] = f"{base}/{after}"
            if limit:
                kwargs["MaxKeys"] = limit
            keys: list[str] = []
            while True:
                page = self.fs.call_s3("list_objects_v2", **kwargs)
                keys += [item["Key"].removeprefix(base + "/") for item in page.get("Contents", [])]
                if not page.get("IsTruncated") or (limit and len(keys) >= limit):
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

    def lock(self, stage: Stage, chunk_id: str) -> AbstractContextManager[bool]:
        """The local lock (other processes sharing this scratch folder), then the chunk's lease in the
        bucket (processes on other machines)."""
        return self.leases.hold(stage, chunk_id, local=try_lock(self.lock_file(stage, chunk_id)))

    def manifest(self) -> ObjectManifest:
        """The lake's manifest, as what it is here: leases write their fences into it."""
        return self._manifest

    def _new_manifest(self) -> ObjectManifest:
        from lake.object_manifest import ObjectManifest

        return ObjectManifest(self)


def _one_line(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
    return text.splitlines()[0] if text else type(exc).__name__
