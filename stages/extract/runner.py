"""Extract every planned chunk that the lake does not hold yet, several at a time."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lake.atomic import temp_path_for
from lake.commit import commit_into_lake
from lake.errors import HistError
from lake.formats import ChunkSpec, ManifestEvent
from lake.locks import try_lock
from lake.manifest import Manifest
from lake.paths import LakePaths
from stages.extract.base import BaseAdapter

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0


def run_extract(adapter: BaseAdapter, paths: LakePaths, chunks: list[ChunkSpec], *,
                max_concurrency: int = 4, force: bool = False) -> ExtractReport:
    """Fetch and commit each chunk not already committed (all of them with `force`)."""
    paths.ensure()
    manifest = Manifest(paths)
    committed = manifest.latest("extract")
    todo = [c for c in chunks if force or c.chunk_id not in committed]
    report = ExtractReport(skipped=[c.chunk_id for c in chunks if c not in todo])
    if not force:
        todo = [c for c in todo if not _reuse_same_request(manifest, committed, c, report)]
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="extract") as pool:
        outcomes = list(pool.map(lambda c: _extract_one(adapter, paths, manifest, c, force), todo))
    for chunk, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, ManifestEvent):
            report.extracted.append(chunk.chunk_id)
            raw = outcome.file("raw")
            report.records += raw.records if raw else 0
            report.bytes += raw.bytes if raw else 0
        elif outcome is None:
            report.skipped.append(chunk.chunk_id)
        else:
            report.failed[chunk.chunk_id] = outcome
    return report


def _reuse_same_request(manifest: Manifest, committed: dict[str, ManifestEvent], chunk: ChunkSpec,
                        report: ExtractReport) -> bool:
    """Bytes bought already for another schema of the same request (ohlcv-1m for ohlcv-5m) are
    recorded for this chunk too instead of being downloaded again."""
    bought = next((e for e in committed.values() if e.chunk.source_key == chunk.source_key), None)
    if bought is None:
        return False
    manifest.record("extract", chunk, files=bought.files, records=bought.records)
    report.reused.append(chunk.chunk_id)
    log.info("chunk %s reuses the raw file of chunk %s", chunk.chunk_id, bought.chunk_id)
    return True


def _extract_one(adapter: BaseAdapter, paths: LakePaths, manifest: Manifest, chunk: ChunkSpec,
                 force: bool) -> ManifestEvent | str | None:
    """The committed event, None when another process holds or has just committed the chunk, or the
    failure reason."""
    with try_lock(paths.lock("extract", chunk.chunk_id)) as locked:
        if not locked or (not force and chunk.chunk_id in manifest.latest("extract")):
            return None
        temp = temp_path_for(paths.tmp / f"{chunk.chunk_id}.dbn.zst")
        sidecar = temp.with_suffix(".json")
        try:
            records = adapter.fetch(chunk, temp)
            files = []
            raw_symbols = adapter.raw_symbols(chunk, temp)
            if raw_symbols is not None:
                sidecar.write_text(json.dumps(raw_symbols, sort_keys=True))
                files.append(commit_into_lake(paths, sidecar, "symbology", len(raw_symbols),
                                              lambda sha: paths.raw(chunk, sha, ".symbology.json")))
            files.insert(0, commit_into_lake(paths, temp, "raw", records, lambda sha: paths.raw(chunk, sha)))
        except HistError as exc:
            reason = str(exc)
            manifest.record("extract", chunk, error=reason)
            log.error("extract failed for chunk %s: %s", chunk.chunk_id, reason)
            return reason
        finally:
            temp.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
        event = manifest.record("extract", chunk, files=files, records={"records": records})
        log.info("extracted chunk %s: %d records, %d bytes", chunk.chunk_id, records, files[0].bytes)
        return event
