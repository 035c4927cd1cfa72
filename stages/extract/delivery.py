"""Committing delivered bytes, however they came (a streamed request or a batch file): the raw
bytes first, so that whatever follows (symbology) never makes the next run pay for them again; then
the raw symbols, when the response does not name each contract.

Bought bytes stay on local disk until a manifest event names them: a streamed download is kept in
`<scratch>/tmp/downloaded/` (a batch file in `tmp/batch/<job id>/`) and removed only after its commit,
so a commit that fails (an S3 store unreachable, the lease lost) is retried by the next run without
downloading again. (A local lake renames the bytes into raw/ before the event: if that append fails,
they are there named by no event, and the next run downloads again.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lake.errors import HistError
from lake.formats import ChunkSpec, ManifestEvent
from lake.manifest import Manifest
from lake.paths import raw_key
from lake.storage import Lake
from stages.extract.base import BaseAdapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """Where delivered bytes go and who hears of each committed chunk."""

    adapter: BaseAdapter
    lake: Lake
    manifest: Manifest
    on_chunk: Callable[[ManifestEvent], None] | None = None


def commit_raw(delivery: Delivery, chunk: ChunkSpec, temp: Path, records: int, scratch: Path,
               batch_job: str | None = None) -> ManifestEvent | str:
    """Commit `temp` as the chunk's raw file, then resolve its raw symbols if it needs them."""
    lake, manifest = delivery.lake, delivery.manifest
    pending = delivery.adapter.needs_raw_symbols(chunk)
    try:
        raw = lake.commit(temp, "raw", records, lambda sha: raw_key(chunk, sha))
        event = manifest.record("extract", chunk, files=[raw], records={"records": records},
                                symbology_pending=pending, batch_job=batch_job)
    except OSError as exc:
        kept = f" (the bytes stay in {temp}: a rerun commits them without downloading)" if temp.exists() else ""
        return failed(manifest, chunk, f"cannot commit the raw file: {exc}{kept}", batch_job)
    except HistError:  # the lake is unreachable or the lease lost: the run stops, the bytes wait for the next one
        log.warning("chunk %s: not committed; its downloaded bytes stay in %s for the next run", chunk.chunk_id, temp,
                    extra={"event": "kept", "stage": "extract", "chunk_id": chunk.chunk_id})
        raise
    temp.unlink(missing_ok=True)  # committed: a copy (object store) is no longer needed
    log.info("extracted chunk %s: %d records, %d bytes", chunk.chunk_id, records, raw.bytes,
             extra={"event": "chunk_committed", "stage": "extract", "chunk_id": chunk.chunk_id, "records": records})
    if pending:
        return resolve_and_commit(delivery, event, scratch)
    if delivery.on_chunk:
        delivery.on_chunk(event)
    return event


def resolve_and_commit(delivery: Delivery, extracted: ManifestEvent, scratch: Path) -> ManifestEvent | str:
    """Resolve and commit the raw symbols of a chunk whose bytes are committed already."""
    lake, manifest = delivery.lake, delivery.manifest
    chunk, raw = extracted.chunk, extracted.file("raw")
    assert raw is not None
    sidecar = scratch / "symbology.json"
    try:
        raw_symbols = delivery.adapter.raw_symbols(chunk, lake.local_file(raw.path, scratch))
        sidecar.write_text(json.dumps(raw_symbols, sort_keys=True))
        symbology = lake.commit(sidecar, "symbology", len(raw_symbols),
                                lambda sha: raw_key(chunk, sha, ".symbology.json"))
    except HistError as exc:
        return failed(manifest, chunk, f"symbology.resolve: {exc} (the raw bytes are in the lake: a rerun "
                                       "resolves again without downloading)", extracted.batch_job)
    event = manifest.record("extract", chunk, files=[raw, symbology], records=extracted.records,
                            batch_job=extracted.batch_job)
    log.info("resolved the raw symbols of %d instruments for chunk %s", len(raw_symbols), chunk.chunk_id,
             extra={"event": "chunk_committed", "stage": "extract", "chunk_id": chunk.chunk_id})
    if delivery.on_chunk:
        delivery.on_chunk(event)
    return event


def failed(manifest: Manifest, chunk: ChunkSpec, reason: str, batch_job: str | None = None) -> str:
    """Record and log a failure; `batch_job` names the job whose poll, file or chunk failed (the job
    stays good: only a failure without it, after the job's submission, gives a job up)."""
    manifest.record("extract", chunk, error=reason, batch_job=batch_job)
    log.error("extract failed for chunk %s: %s", chunk.chunk_id, reason,
              extra={"event": "chunk_failed", "stage": "extract", "chunk_id": chunk.chunk_id})
    return reason


def kept_download(lake: Lake, chunk: ChunkSpec) -> tuple[Path, int] | None:
    """A verified download of `chunk` that is not committed yet, and its records."""
    for path in (lake.tmp / "downloaded").glob(f"{chunk.chunk_id}.*.dbn.zst"):
        return path, int(path.name.removeprefix(f"{chunk.chunk_id}.").split(".", 1)[0])
    return None


def keep_download(lake: Lake, chunk: ChunkSpec, temp: Path, records: int) -> Path:
    """Move a verified download out of the chunk's scratch folder (which is wiped whatever happens)
    to where it waits for its commit; the name carries its record count."""
    kept = lake.tmp / "downloaded" / f"{chunk.chunk_id}.{records}.dbn.zst"
    kept.parent.mkdir(parents=True, exist_ok=True)
    temp.replace(kept)
    return kept
