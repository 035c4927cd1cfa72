"""Databento's batch API for the replay gateway; tools/gateway.py's docstring documents the endpoints, states
and admin calls. Jobs live in <batch-dir>/<job_id>/ (job.json, files/, <job_id>.zip) and are built, when a
poll first finds them done, from get_range's stream for each split window."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import string
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tools.gateway import (
    ALL_SYMBOLS,
    STREAM_BLOCK,
    Gateway,
    GatewayError,
    Handler,
    RangeRequest,
    ReplayStore,
    parse_time,
    price,
    zstd_blocks,
)
from tools.generate import NS, day_start_ns

STATES = ("received", "queued", "processing", "done")
STAMPS = {"queued": "ts_queued", "processing": "ts_process_start", "done": "ts_process_done"}
OPTIONS = {"encoding": ("dbn",), "compression": ("zstd", "none"), "delivery": ("download",),
           "split_duration": ("day", "week", "month", "year", "none")}
SPLIT_SIZE = (1_000_000_000, 10_000_000_000)
DOWNLOAD = "/v0/batch/download"
EXPIRY_NS = 30 * 86400 * NS
ID_CHARS = string.ascii_uppercase + string.digits
Params = dict[str, str]
FileInfo = dict[str, Any]


def iso(ns: int) -> str:
    """Databento's timestamp format, e.g. 2024-01-02T00:00:00.000000000Z."""
    return f"{datetime.fromtimestamp(ns // NS, UTC):%Y-%m-%dT%H:%M:%S}.{ns % NS:09d}Z"


def day_of(ns: int) -> date:
    return datetime.fromtimestamp(ns // NS, UTC).date()


def flag(p: Params, name: str) -> bool:
    """A form boolean as the client sends it ("True"/"False")."""
    return p.get(name, "").lower() in ("true", "1")


def windows(start: int, end: int, split: str) -> Iterator[tuple[int, int]]:
    """[start, end) cut at UTC day, week (from Sunday), month or year boundaries; whole for "none"."""
    if split == "none":
        yield start, end
        return
    first = day_of(start)
    if split == "week":
        first -= timedelta(days=(first.weekday() + 1) % 7)
    elif split in ("month", "year"):
        first = first.replace(day=1, month=1 if split == "year" else first.month)
    while day_start_ns(first) < end:
        if split in ("day", "week"):
            following = first + timedelta(days=1 if split == "day" else 7)
        elif split == "month":
            following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        else:
            following = first.replace(year=first.year + 1)
        yield max(start, day_start_ns(first)), min(end, day_start_ns(following))
        first = following


def file_name(request: RangeRequest, symbol: str | None, compress: bool) -> str:
    """Databento's name for one file, e.g. glbx-mdp3-20240102.ohlcv-1m.dbn.zst (a date range for longer
    windows, the symbol before the extension when split by symbol)."""
    first, last = day_of(request.start), day_of(request.end - 1)
    dates = f"{first:%Y%m%d}" + ("" if first == last else f"-{last:%Y%m%d}")
    part = "" if symbol is None else "." + re.sub(r"[^A-Za-z0-9.-]", "_", symbol)
    return f"{request.dataset.lower().replace('.', '-')}-{dates}.{request.schema}{part}.dbn" + (
        ".zst" if compress else "")


def write_stream(path: Path, pieces: Iterator[bytes], compress: bool) -> None:
    """A DBN stream to `path`, zstd-compressed exactly as get_range sends it; none if it has no records."""
    head = list(itertools.islice(pieces, 2))
    if len(head) < 2:  # the metadata alone
        return
    whole = itertools.chain(head, pieces)
    with open(path, "wb") as out:
        for block in zstd_blocks(whole) if compress else whole:
            out.write(block)


def describe(path: Path) -> FileInfo:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(STREAM_BLOCK):
            digest.update(block)
    return {"filename": path.name, "size": path.stat().st_size, "hash": f"sha256:{digest.hexdigest()}"}


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single-range `Range: bytes=...` header; None for the whole
    file (no header, or one this gateway ignores); a 416 GatewayError if it starts past the end."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first_text, last_text = match.groups()
    first, last = int(first_text or 0), size - 1
    if not first_text:  # bytes=-n: the last n bytes
        first = max(size - int(last_text), 0)
    elif last_text:
        last = min(int(last_text), size - 1)
    if first > last:
        raise GatewayError(416, f"Range '{header}' is not satisfiable for a file of {size} bytes")
    return first, last


@dataclass
class Job:
    """What get_job_details answers (`info`), the submitted form, when it arrived and, once done, its files."""

    info: dict[str, Any]
    params: Params
    received: int
    polls: int = 0
    files: list[FileInfo] = field(default_factory=list)


class BatchJobs:
    """The jobs, each saved to <root>/<job_id>/job.json; polls move them on."""

    def __init__(self, root: Path, polls_per_state: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.polls_per_state = polls_per_state
        self.lock = threading.Lock()
        self.builds: dict[str, threading.Lock] = {}
        self.jobs = {p.parent.name: Job(**json.loads(p.read_text())) for p in root.glob("*/job.json")}

    def folder(self, job_id: str) -> Path:
        return self.root / job_id / "files"

    def save(self, job: Job) -> None:
        path = self.root / job.info["id"] / "job.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(asdict(job)))
        path.with_suffix(".tmp").replace(path)

    def _job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise GatewayError(404, f"Batch job '{job_id}' not found")
        return self.jobs[job_id]

    def get(self, job_id: str) -> Job:
        """A copy of the job, as it stands."""
        with self.lock:
            job = self._job(job_id)
            return Job(dict(job.info), dict(job.params), job.received, job.polls, list(job.files))

    def ids(self, since: int = 0) -> list[str]:
        """The jobs received at or after `since`, oldest first."""
        with self.lock:
            return [j.info["id"] for j in sorted(self.jobs.values(), key=lambda j: j.received) if j.received >= since]

    def submit(self, job: Job) -> dict[str, Any]:
        with self.lock:
            self.jobs[job.info["id"]] = job
            self.save(job)
            return dict(job.info)

    def poll(self, job_id: str, build: Callable[[Job], list[FileInfo]]) -> dict[str, Any]:
        """One poll: the job moves on one state every `polls_per_state` polls (0: straight to done), and
        `build` writes its files the first time it reaches done."""
        with self.lock:
            job = self._job(job_id)
            if job.info["state"] in ("done", "expired"):
                return dict(job.info)
            job.polls += 1
            step = (job.polls - 1) // self.polls_per_state if self.polls_per_state > 0 else len(STATES)
            target = max(STATES.index(job.info["state"]), min(step, len(STATES) - 1))
            if STATES[target] != "done":
                self._advance(job, target)
                return dict(job.info)
            build_lock = self.builds.setdefault(job_id, threading.Lock())
        with build_lock:
            if job.info["state"] not in ("done", "expired"):  # another poll may have built or expired it
                files = build(self.get(job_id))
                with self.lock:
                    job.files = files
                    self._advance(job, target)
        with self.lock:
            return dict(job.info)

    def _advance(self, job: Job, target: int) -> None:
        """Moves the job on to STATES[target], stamping each state it enters (self.lock held)."""
        now = iso(time.time_ns())
        for state in STATES[STATES.index(job.info["state"]) + 1:target + 1]:
            job.info[STAMPS[state]] = now
        job.info["state"] = STATES[target]
        job.info["progress"] = {"processing": 0, "done": 100}.get(job.info["state"])
        if job.info["state"] == "done":
            job.info["ts_expiration"] = iso(job.received + EXPIRY_NS)
            job.info["actual_size"] = sum(f["size"] for f in job.files if ".dbn" in f["filename"])
            job.info["package_size"] = sum(f["size"] for f in job.files)
        self.save(job)

    def expire(self, job_id: str) -> None:
        """The job's files are deleted and it shows as expired."""
        with self.lock:
            job = self._job(job_id)
            job.info.update(state="expired", ts_expiration=iso(time.time_ns()), progress=None)
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
            (self.root / job_id / f"{job_id}.zip").unlink(missing_ok=True)
            self.save(job)

    def forget(self) -> None:
        """Every job and its files gone, as for a new account (tests that count submissions)."""
        with self.lock:
            for job_id in self.jobs:
                shutil.rmtree(self.root / job_id, ignore_errors=True)
            self.jobs.clear()
            self.builds.clear()

    def zip(self, job: Job) -> Path:
        """Every file of a done job in one zip (stored, not recompressed), made on first use."""
        job_id: str = job.info["id"]
        path = self.root / job_id / f"{job_id}.zip"
        with self.lock:
            build_lock = self.builds.setdefault(job_id, threading.Lock())
        with build_lock:
            if not path.exists():
                partial = path.with_suffix(".partial")
                with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
                    for f in job.files:
                        archive.write(self.folder(job_id) / f["filename"], f["filename"])
                partial.replace(path)
        return path

    def view(self) -> dict[str, Any]:
        with self.lock:
            return {"polls_per_state": self.polls_per_state,
                    "jobs": {i: {"state": j.info["state"], "polls": j.polls} for i, j in self.jobs.items()}}


class BatchGateway(Gateway):
    """The replay gateway with Databento's batch API."""

    def __init__(self, address: tuple[str, int], store: ReplayStore, key: str, root: Path,
                 polls_per_state: int) -> None:
        super().__init__(address, store, key, BatchHandler)
        self.batch = BatchJobs(root, polls_per_state)
        self.user_id = base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()[:8]


class BatchHandler(Handler):
    server: BatchGateway

    def _answer(self, path: str, p: Params) -> object:
        if path == "/v0/batch.submit_job":
            return self._submit(p)
        if path == "/v0/batch.get_job_details":
            return self.server.batch.poll(p.get("job_id", ""), self._build)
        if path == "/v0/batch.list_jobs":
            return self._list_jobs(p)
        if path == "/v0/batch.list_files":
            return self._list_files(p.get("job_id", ""))
        return super()._answer(path, p)

    def _respond(self, path: str, params: Params, fault: dict[str, Any] | None) -> None:
        if path == "/v0/batch.download":
            self._send_file(self.server.batch.zip(self._done(params.get("job_id", ""))), fault)
        elif path.startswith(DOWNLOAD + "/"):
            user, _, rest = path.removeprefix(DOWNLOAD + "/").partition("/")
            job_id, _, name = rest.partition("/")
            job = self._done(job_id)
            if user != self.server.user_id or unquote(name) not in {f["filename"] for f in job.files}:
                raise GatewayError(404, f"No file '{unquote(name)}' in batch job '{job_id}'")
            self._send_file(self.server.batch.folder(job_id) / unquote(name), fault)
        else:
            super()._respond(path, params, fault)

    def _admin(self, path: str, body: Any, post: bool) -> object:
        if path != "/_admin/batch":
            return super()._admin(path, body, post)
        batch = self.server.batch
        body = body or {}
        if post and "polls_per_state" in body:
            if not isinstance(body["polls_per_state"], int) or body["polls_per_state"] < 0:
                raise GatewayError(422, "polls_per_state must be an integer >= 0")
            batch.polls_per_state = body["polls_per_state"]
        if post and "expire" in body:
            batch.expire(str(body["expire"]))
        if post and body.get("forget"):
            batch.forget()
        return batch.view()

    def _submit(self, p: Params) -> dict[str, Any]:
        request = self._request(p)
        for name, allowed in OPTIONS.items():
            if p.get(name, allowed[0]) not in allowed:
                raise GatewayError(422, f"Invalid `{name}` '{p[name]}': expected one of {', '.join(allowed)}")
        if flag(p, "split_symbols") and request.symbols == [ALL_SYMBOLS]:
            raise GatewayError(422, "Invalid `split_symbols`: cannot be requested with ALL_SYMBOLS")
        split_size, limit = p.get("split_size"), p.get("limit")
        if split_size and not (split_size.isdigit() and SPLIT_SIZE[0] <= int(split_size) <= SPLIT_SIZE[1]):
            raise GatewayError(422, f"Invalid `split_size` '{split_size}': must be between 1e9 and 10e9 bytes")
        if limit and not limit.isdigit():
            raise GatewayError(422, f"Invalid `limit` '{limit}'")
        count, size = self._usage(request)
        now = time.time_ns()
        prefix = request.dataset.split(".")[0]
        job_id = f"{prefix}-{day_of(now):%Y%m%d}-{''.join(secrets.choice(ID_CHARS) for _ in range(10))}"
        none_as_null = {"none": None}
        info = {
            "id": job_id, "user_id": self.server.user_id, "api_key": None, "bill_id": None,
            "cost_usd": price(request.schema, size), "dataset": request.dataset, "symbols": ",".join(request.symbols),
            "stype_in": request.stype_in, "stype_out": request.stype_out, "schema": request.schema,
            "start": iso(request.start), "end": iso(request.end), "limit": int(limit) if limit else None,
            "encoding": "dbn", "compression": none_as_null.get(p.get("compression", "zstd"), "zstd"),
            "pretty_px": flag(p, "pretty_px"), "pretty_ts": flag(p, "pretty_ts"), "map_symbols": flag(p, "map_symbols"),
            "split_symbols": flag(p, "split_symbols"),
            "split_duration": none_as_null.get(p.get("split_duration", "day"), p.get("split_duration", "day")),
            "split_size": int(split_size) if split_size else None, "packaging": None, "delivery": "download",
            "record_count": count, "billed_size": size, "actual_size": None, "package_size": None,
            "state": "received", "ts_received": iso(now), "ts_queued": None, "ts_process_start": None,
            "ts_process_done": None, "ts_expiration": None, "progress": None,
        }
        return self.server.batch.submit(Job(info, dict(p), now))

    def _build(self, job: Job) -> list[FileInfo]:
        """The job's files: get_range's stream per split window (and symbol), then the support files."""
        p, info = job.params, job.info
        request = self._request(p)
        folder = self.server.batch.folder(info["id"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        compress = info["compression"] == "zstd"
        groups = [[s] for s in request.symbols] if info["split_symbols"] else [request.symbols]
        for start, end in windows(request.start, request.end, info["split_duration"] or "none"):
            for symbols in groups:
                part = self._request({**p, "start": str(start), "end": str(end), "symbols": ",".join(symbols)})
                name = file_name(part, symbols[0] if info["split_symbols"] else None, compress)
                write_stream(folder / name, part.dbn(self.server.store), compress)
        query = ("dataset", "schema", "symbols", "stype_in", "stype_out", "start", "end", "limit")
        customizations = ("encoding", "compression", "pretty_px", "pretty_ts", "map_symbols", "split_symbols",
                          "split_duration", "split_size", "packaging", "delivery")
        days = range((day_of(request.end - 1) - day_of(request.start)).days + 1)
        support = {
            "metadata.json": {"job_id": info["id"], "query": {k: info[k] for k in query},
                              "customizations": {k: info[k] for k in customizations}},
            "symbology.json": self._resolve({**p, "start_date": p.get("start", ""), "end_date": p.get("end", "")}),
            "condition.json": [{"date": (day_of(request.start) + timedelta(days=d)).isoformat(),
                                "condition": "available"} for d in days],
        }
        for name, body in support.items():
            (folder / name).write_text(json.dumps(body, indent=2))
        return [describe(path) for path in sorted(folder.iterdir())]

    def _list_jobs(self, p: Params) -> list[dict[str, Any]]:
        """Polls every job since `since`; always the short form, as Databento's since 2026-10-27 (`short`
        is ignored: get_job_details has the rest)."""
        batch = self.server.batch
        states = p["states"].split(",") if p.get("states") else STATES
        since = parse_time(p["since"], "since") if p.get("since") else 0
        jobs = [batch.poll(job_id, self._build) for job_id in batch.ids(since)]
        return [{k: j[k] for k in ("id", "state", "ts_received")} for j in jobs if j["state"] in states]

    def _list_files(self, job_id: str) -> list[FileInfo]:
        job = self.server.batch.get(job_id)
        if job.info["state"] == "expired":
            raise GatewayError(410, f"Batch job '{job_id}' has expired: its files were deleted")
        base = f"https://{self.headers.get('Host', '127.0.0.1')}{DOWNLOAD}/{self.server.user_id}/{job_id}/"
        return [{**f, "urls": {"https": base + f["filename"], "ftp": ""}} for f in job.files]

    def _done(self, job_id: str) -> Job:
        job = self.server.batch.get(job_id)
        if job.info["state"] == "expired":
            raise GatewayError(410, f"Batch job '{job_id}' has expired: its files were deleted")
        if job.info["state"] != "done":
            raise GatewayError(404, f"Batch job '{job_id}' is not done (state '{job.info['state']}')")
        return job

    def _send_file(self, path: Path, fault: dict[str, Any] | None) -> None:
        """The file, or the part a Range header asks for (206); a slow, truncate or corrupt fault applies."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, also when a fault cuts the reply
        except FileNotFoundError:
            raise GatewayError(410, f"{path.name} has expired: it was deleted") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            try:
                span = byte_range(self.headers.get("Range"), size)
            except GatewayError as exc:
                self._json(416, {"detail": exc.detail}, {"Content-Range": f"bytes */{size}"})
                return
            first, last = span or (0, size - 1)
            self.send_response(206 if span else 200)
            self.send_header("Content-Type", "application/zip" if path.suffix == ".zip" else "application/octet-stream")
            self.send_header("Content-Length", str(last + 1 - first))
            self.send_header("Accept-Ranges", "bytes")
            if span:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            kind = fault["kind"] if fault else None
            budget = int(fault.get("after_bytes", 200)) if fault and kind == "truncate" else None
            flip = (first + last) // 2 if kind == "corrupt" else -1
            handle.seek(first)
            offset = first
            while offset <= last:
                block = bytearray(handle.read(min(STREAM_BLOCK, last + 1 - offset)))
                if offset <= flip < offset + len(block):
                    block[flip - offset] ^= 0xFF
                if budget is not None and offset - first + len(block) > budget:
                    self.wfile.write(block[:max(budget - (offset - first), 0)])
                    self.wfile.flush()
                    raise ConnectionAbortedError("truncated on purpose")
                if fault and kind == "slow":
                    time.sleep(float(fault.get("delay", 0.5)))
                self.wfile.write(block)
                offset += len(block)
