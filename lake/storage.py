"""The lake's one filesystem seam. Every lake read and write goes through a `Lake`: a local folder
(`LocalLake`) or any S3-compatible object store (`ObjectLake`, in lake/object_lake.py), both through
fsspec. Stages never touch paths or buckets themselves: they commit finished local files, open
committed ones, and hold a chunk's lock while they work on it.

What differs between the two is the commit protocol: a local lake renames into place and appends to a
flock'ed JSONL manifest; an object store has neither rename nor flock, so it writes each object whole
under its content address and makes it visible through a conditionally created manifest event (see
docs/storage.md)."""

from __future__ import annotations

import functools
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import fsspec

from lake.atomic import commit_file, sha256_file, sha256_stream
from lake.errors import ConfigError
from lake.formats import FileRef, FileRole, Stage
from lake.locks import try_lock
from lake.paths import AREAS, MANIFEST_LOG

if TYPE_CHECKING:
    import duckdb

    from lake.manifest import Manifest


class Lake(ABC):
    """A lake at `url`, with its in-flight work on local disk under `scratch_root`."""

    def __init__(self, url: str, fs: fsspec.AbstractFileSystem, root: str, scratch_root: Path) -> None:
        self.url = url
        self.fs = fs
        self.root = root
        self.scratch_root = scratch_root
        self._manifest = self._new_manifest()  # made here, not lazily: worker threads share it

    def __reduce__(self) -> tuple[Callable[[str], Lake], tuple[str]]:
        """A lake travels to cluster workers as its url; each process opens (and caches) its own."""
        return open_lake, (self.url,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def key(self, relative: str) -> str:
        """The filesystem path of a lake key."""
        return f"{self.root}/{relative}"

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.key(relative)))

    def open_input(self, relative: str) -> IO[bytes]:
        """A committed file, for reading (Parquet readers take it as it is)."""
        return self.fs.open(self.key(relative), "rb")  # type: ignore[no-any-return]

    def read_bytes(self, relative: str) -> bytes:
        return bytes(self.fs.cat_file(self.key(relative)))

    def delete(self, relatives: list[str]) -> None:
        if relatives:
            self.fs.rm([self.key(r) for r in relatives])

    def sha256(self, relative: str) -> str:
        with self.open_input(relative) as fh:
            return sha256_stream(fh)

    def commit(self, temp: Path, role: FileRole, records: int, key_for: Callable[[str], str]) -> FileRef:
        """Hash the finished file `temp`, make it visible under `key_for(sha256)` and describe it for
        the manifest. The file only becomes part of the lake when a manifest event names it."""
        sha256 = sha256_file(temp)
        relative = key_for(sha256)
        size = temp.stat().st_size
        self.put(temp, relative)
        return FileRef(role=role, path=relative, sha256=sha256, bytes=size, records=records)

    @property
    def tmp(self) -> Path:
        return self.scratch_root / "tmp"

    def lock_file(self, stage: Stage, chunk_id: str) -> Path:
        return self.scratch_root / "locks" / stage / f"{chunk_id}.lock"

    @abstractmethod
    def put(self, temp: Path, relative: str) -> None:
        """Make a finished local file visible under `relative`, whole or not at all."""

    @abstractmethod
    def local_file(self, relative: str, scratch: Path) -> Path:
        """A committed file as a local path (decoders that need one), copied into `scratch` if need be."""

    @abstractmethod
    def uri(self, relative: str) -> str:
        """The file's name for DuckDB (after `attach`) and for people."""

    @abstractmethod
    def lock(self, stage: Stage, chunk_id: str) -> AbstractContextManager[bool]:
        """True while this process may work on the chunk; False if another one does (at once for a
        local lake; on an object store after up to a third of a lease period, the time it takes to tell
        a live holder, which renews its lease, from a dead one)."""

    def manifest(self) -> Manifest:
        """The lake's manifest, one per lake and process: its reads are incremental, so the chunk
        tasks of a run share what has been read."""
        return self._manifest

    @abstractmethod
    def _new_manifest(self) -> Manifest: ...

    @abstractmethod
    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read this lake's `uri`s."""

    def ensure(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def check_writable(self) -> str:
        """Write and remove a probe file (`hist doctor`); what was checked, or an error."""
        name = f"doctor-{uuid.uuid4().hex}"
        probe = self.tmp / name
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        self.put(probe, f"tmp/{name}")
        self.delete([f"tmp/{name}"])
        probe.unlink(missing_ok=True)
        return f"{self.url} is writable"


class LocalLake(Lake):
    """A lake folder on a local (or shared POSIX) filesystem: commit by fsync and rename, flock locks."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), fsspec.filesystem("file"), str(root), root)

    @property
    def path(self) -> Path:
        return Path(self.root)

    def put(self, temp: Path, relative: str) -> None:
        commit_file(temp, self.path / relative)

    def local_file(self, relative: str, scratch: Path) -> Path:
        return self.path / relative

    def open_input(self, relative: str) -> IO[bytes]:
        return open(self.path / relative, "rb")

    def uri(self, relative: str) -> str:
        return str(self.path / relative)

    def lock(self, stage: Stage, chunk_id: str) -> AbstractContextManager[bool]:
        return try_lock(self.lock_file(stage, chunk_id))

    def _new_manifest(self) -> Manifest:
        from lake.manifest import JsonlManifest

        return JsonlManifest(self.path / MANIFEST_LOG)

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """DuckDB reads local paths itself."""

    def ensure(self) -> None:
        for sub in (*AREAS, "locks", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)


def open_lake(url: str | os.PathLike[str]) -> Lake:
    """The lake at a local path or an s3:// url (one object per lake and process)."""
    text = os.fspath(url)
    if "://" in text and not text.startswith("s3://"):
        raise ConfigError(f"lake {text}: only local folders and s3://bucket/prefix urls are supported")
    return _opened(text.rstrip("/") if text.startswith("s3://") else str(Path(text).resolve()))


@functools.cache
def _opened(url: str) -> Lake:
    if url.startswith("s3://"):
        from lake.object_lake import ObjectLake

        return ObjectLake.from_url(url)
    return LocalLake(Path(url))
