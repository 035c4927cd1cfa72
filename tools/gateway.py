"""A Databento-compatible replay gateway: serves tools/generate.py output (or real samples laid out by
tools/samples.py) over HTTPS on 127.0.0.1 to the official `databento` client, which rewrites every
gateway to https. Trust its self-signed certificate with REQUESTS_CA_BUNDLE=<cert-dir>/cert.pem.

    DATABENTO_API_KEY=db-... python tools/gateway.py --data data --port 8443 --cert-dir certs

Data: <data>/<DATASET>/<schema>/<YYYY-MM-DD>.dbn.zst per UTC day of the index timestamp, and
<data>/<DATASET>/symbology.json ({stype_in: {symbol: [{"d0", "d1", "s"}]}}).

Endpoints: /v0/timeseries.get_range, /v0/metadata.{get_cost,get_record_count,get_billable_size,
list_datasets,list_schemas,get_dataset_range}, /v0/symbology.resolve; HTTP basic auth with the key as
user name; errors as JSON {"detail": ...}. As Databento does:
- at most 2,000 symbols per get_range, cost or resolve call (else 422); symbols=ALL_SYMBOLS selects
  every instrument of the dataset, whether or not the symbology knows it;
- get_range streams in the stored files' own DBN version and record layout; its metadata carries
  the symbology mappings, except for stype_in=instrument_id and ALL_SYMBOLS requests, which get none;
- symbology.resolve maps raw_symbol/parent/continuous -> instrument_id and instrument_id -> raw_symbol,
  each with its [d0, d1) intervals clipped to the requested dates.

Batch (tools/gateway_batch.py), as Databento's: POST /v0/batch.submit_job (get_range's form and
validation, plus encoding=dbn, compression=zstd|none, split_duration=day|week|month|year|none, split_symbols,
split_size in [1e9, 10e9], delivery=download) answers the job dict (id like GLBX-20240102-ABCDEFGHIJ,
state "received", cost_usd, billed_size, record_count, the request's fields, ts_received, ...).
GET /v0/batch.get_job_details?job_id= and GET /v0/batch.list_jobs?states=&since= are polls: a
job moves received -> queued -> processing -> done, one state per `polls_per_state` polls of it (default
1: done on the 4th poll; 0: done on the first); list_jobs polls every job, filters on states (default all
but expired) and since, and answers the short form {id, state, ts_received} (`short` is ignored). On
reaching done the job is built under --batch-dir (default <cert-dir>/../batch; it survives restarts): one
file per split window (and symbol) with records, named like glbx-mdp3-20240102.ohlcv-1m.dbn.zst
(glbx-mdp3-20240101-20240131... for longer windows, ...ohlcv-1m.ESH4.dbn.zst with split_symbols), each
byte for byte get_range's stream for that sub-window, plus metadata.json, symbology.json and condition.json.
GET /v0/batch.list_files?job_id= answers [{filename, size, hash: "sha256:<hex>", urls: {https, ftp: ""}}]
([] before done); the https URL is GET /v0/batch/download/<user_id>/<job_id>/<filename>, and
GET /v0/batch.download?job_id= is every file as one zip. Downloads honour a Range header (206 with
Content-Range, 416 if unsatisfiable). Unknown jobs or files: 404; expired jobs: 410 on list_files and
downloads.

For tests, /_admin/faults (POST a JSON list) injects faults into any endpoint — {"kind":
"429"|"500"|"truncate"|"slow"|"corrupt", "count": n, "retry_after": s, "delay": s, "status": 5xx,
"after_bytes": n, "path": "/v0/..." (default /v0/timeseries.get_range; a prefix such as /v0/batch/download
matches every path below it), "match": {"start": "2024-01-03"}}; "corrupt" serves a download with its
middle byte flipped. GET /_admin/requests returns the request log (with "range" when a Range header was
sent; POST clears it). POST /_admin/batch {"polls_per_state": n, "expire": job_id} sets the polls per state
and/or expires a job (state "expired", files deleted); {"forget": true} drops every job. GET /_admin/batch
shows the setting and each job's state and polls.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import databento_dbn as dbn
import numpy as np
import zstandard
from databento import DBNStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.generate import NS, RECORDS, day_start_ns, index_ts, metadata

PRICE_PER_GB = {"trades": 40.0, "tbbo": 50.0, "statistics": 10.0, "definition": 5.0}
DEFAULT_PRICE_PER_GB = 20.0
STREAM_BLOCK = 1 << 20
MAX_SYMBOLS = 2000
ALL_SYMBOLS = "ALL_SYMBOLS"
STYPES_IN = ("raw_symbol", "parent", "continuous", "instrument_id")
Mappings = dict[str, list[dict[str, str]]]
Span = tuple[int, int, int]  # instrument_id, [start_ns, end_ns)


class GatewayError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def parse_time(value: str, field: str) -> int:
    """ISO date/datetime or integer nanoseconds -> ns since the epoch (UTC)."""
    try:
        if value.isdigit():
            return int(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(422, f"Invalid `{field}` '{value}'") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def parse_symbols(p: dict[str, str]) -> list[str]:
    """The request's symbols, refused as Databento does when there are none or more than 2,000."""
    symbols = [s for s in p.get("symbols", "").split(",") if s]
    if not symbols:
        raise GatewayError(422, "Invalid `symbols`: at least one symbol is required")
    if len(symbols) > MAX_SYMBOLS:
        raise GatewayError(422, f"Invalid `symbols`: more than {MAX_SYMBOLS} symbols in one request")
    return symbols


class ReplayStore:
    """The stored files, queried by dataset, schema, symbols and [start, end)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def datasets(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "symbology.json").exists())

    def schemas(self, dataset: str) -> list[str]:
        self.check(dataset)
        return sorted(p.name for p in (self.root / dataset).iterdir() if p.is_dir())

    def symbology(self, dataset: str, stype_in: str) -> Mappings:
        """{symbol: [{d0, d1, s}]} for one input symbology; by instrument_id, s is the raw symbol."""
        known = json.loads((self.root / dataset / "symbology.json").read_text())
        if stype_in != "instrument_id":
            return dict(known.get(stype_in, {}))
        by_id: Mappings = {}
        for raw, intervals in known.get("raw_symbol", {}).items():
            for i in intervals:
                by_id.setdefault(i["s"], []).append({**i, "s": raw})
        return by_id

    def version(self, dataset: str, schema: str) -> int:
        """The DBN version of the stored files: the stream keeps their record layout."""
        first = next(iter(sorted((self.root / dataset / schema).glob("*.dbn.zst"))), None)
        return DBNStore.from_file(first).metadata.version if first else dbn.DBN_VERSION

    def check(self, dataset: str, schema: str | None = None) -> None:
        if dataset not in self.datasets():
            raise GatewayError(422, f"Invalid dataset '{dataset}'")
        if schema is not None and schema not in RECORDS:
            raise GatewayError(422, f"Invalid schema '{schema}'")

    def resolve(self, dataset: str, symbols: list[str], stype_in: str, start_ns: int, end_ns: int
                ) -> tuple[Mappings, list[str]]:
        """Mappings of each requested symbol (every known one for ALL_SYMBOLS), clipped to the
        request's days, and the not-found ones."""
        self.check(dataset)
        if stype_in not in STYPES_IN:
            raise GatewayError(422, f"Invalid `stype_in` '{stype_in}'")
        known = self.symbology(dataset, stype_in)
        first = datetime.fromtimestamp(start_ns // NS, UTC).date().isoformat()
        last = (datetime.fromtimestamp((end_ns - 1) // NS, UTC).date() + timedelta(days=1)).isoformat()
        mappings, not_found = {}, []
        for symbol in sorted(known) if symbols == [ALL_SYMBOLS] else symbols:
            intervals = [{"d0": max(i["d0"], first), "d1": min(i["d1"], last), "s": i["s"]}
                         for i in known.get(symbol, []) if i["d0"] < last and i["d1"] > first]
            if intervals:
                mappings[symbol] = intervals
            else:
                not_found.append(symbol)
        return mappings, not_found

    def records(self, dataset: str, schema: str, spans: list[Span] | None, start_ns: int, end_ns: int
                ) -> Iterator[np.ndarray]:
        """Record arrays per day file, filtered to [start, end) on the index timestamp and, unless
        `spans` is None (ALL_SYMBOLS), to the (instrument_id, [start_ns, end_ns)) spans of the request's
        symbology (a continuous symbol maps to a different contract on different days)."""
        day = datetime.fromtimestamp(start_ns // NS, UTC).date()
        while day_start_ns(day) < end_ns:
            path = self.root / dataset / schema / f"{day.isoformat()}.dbn.zst"
            if path.exists():
                for arr in DBNStore.from_file(path).to_ndarray(count=2_000_000):
                    ts = index_ts(arr)
                    keep = (ts >= start_ns) & (ts < end_ns)
                    if spans is not None:
                        wanted = np.zeros(len(arr), dtype=bool)
                        for iid, span_start, span_end in spans:
                            wanted |= (arr["instrument_id"] == iid) & (ts >= span_start) & (ts < span_end)
                        keep &= wanted
                    if keep.any():
                        yield arr[keep]
            day += timedelta(days=1)


@dataclass
class RangeRequest:
    """A validated get_range / cost request and what its symbols resolve to."""

    dataset: str
    schema: str
    start: int
    end: int
    symbols: list[str]
    stype_in: str
    stype_out: str
    mappings: Mappings
    not_found: list[str]
    spans: list[Span] | None  # None: every instrument (ALL_SYMBOLS)

    def metadata(self, version: int) -> bytes:
        """Databento sends no mappings for requests by instrument id or for ALL_SYMBOLS."""
        bare = self.stype_in == "instrument_id" or self.symbols == [ALL_SYMBOLS]
        return metadata(self.dataset, self.schema, self.start, self.end, self.symbols,
                        {} if bare else self.mappings, self.stype_in, self.stype_out, self.not_found, version)

    def dbn(self, store: ReplayStore) -> Iterator[bytes]:
        """The uncompressed DBN stream: the metadata, then one piece per non-empty record array."""
        yield self.metadata(store.version(self.dataset, self.schema))
        for arr in store.records(self.dataset, self.schema, self.spans, self.start, self.end):
            yield arr.tobytes()


def zstd_blocks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """`pieces` zstd-compressed as one frame, in blocks of about STREAM_BLOCK bytes."""
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    out: list[bytes] = []
    for piece in pieces:
        out.append(compressor.compress(piece))
        if sum(map(len, out)) >= STREAM_BLOCK:
            yield b"".join(out)
            out = []
    out.append(compressor.flush())
    yield b"".join(out)


def price(schema: str, billed_size: int) -> float:
    """What Databento would charge for `billed_size` bytes of `schema`, in USD."""
    return round(billed_size / 1e9 * PRICE_PER_GB.get(schema, DEFAULT_PRICE_PER_GB), 6)


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: ReplayStore, key: str,
                 handler: type[Handler] | None = None) -> None:
        super().__init__(address, handler or Handler)
        self.store = store
        self.key = key
        self.faults: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def take_fault(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The first fault for this endpoint whose `match` (param -> substring) fits the request."""
        with self.lock:
            for fault in self.faults:
                matches = all(v in params.get(k, "") for k, v in fault.get("match", {}).items())
                where = fault.get("path", "/v0/timeseries.get_range")
                if (path == where or path.startswith(where.rstrip("/") + "/")) and fault.get("count", 1) > 0 \
                        and matches:
                    fault["count"] = fault.get("count", 1) - 1
                    return dict(fault)
        return None


class Handler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch(parse_qs(urlparse(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if urlparse(self.path).path.startswith("/_admin/"):
            self._admin_reply(json.loads(body or "null"), post=True)
            return
        params = parse_qs(urlparse(self.path).query)
        params.update(parse_qs(body))
        self._dispatch(params)

    def _dispatch(self, raw: dict[str, list[str]]) -> None:
        path = urlparse(self.path).path
        params = {k: v[-1] for k, v in raw.items()}
        if path.startswith("/_admin/"):
            self._admin_reply(None, post=False)
            return
        entry: dict[str, Any] = {"path": path, "params": params, "time": time.time()}
        if self.headers.get("Range"):
            entry["range"] = self.headers["Range"]
        with self.server.lock:
            self.server.log.append(entry)
        try:
            self._authorize()
            fault = self.server.take_fault(path, params)
            if fault and fault["kind"] == "429":
                self._json(429, {"detail": "Too many requests"}, {"Retry-After": str(fault.get("retry_after", 1))})
            elif fault and fault["kind"] == "500":
                self._json(int(fault.get("status", 500)), {"detail": "Internal server error"})
            else:
                self._respond(path, params, fault)
        except GatewayError as exc:
            self._json(exc.status, {"detail": exc.detail})

    def _respond(self, path: str, params: dict[str, str], fault: dict[str, Any] | None) -> None:
        """The reply to an authorized request that no 429 or 500 fault answered."""
        if path == "/v0/timeseries.get_range":
            self._stream(self._request(params), fault)
        else:
            self._json(200, self._answer(path, params), fault=fault)

    def _admin_reply(self, body: Any, post: bool) -> None:
        try:
            self._json(200, self._admin(urlparse(self.path).path, body, post))
        except GatewayError as exc:
            self._json(exc.status, {"detail": exc.detail})

    def _admin(self, path: str, body: Any, post: bool) -> object:
        """The test-only calls: POST /_admin/faults sets the faults, /_admin/requests reads (GET) or clears
        (POST) the request log."""
        with self.server.lock:
            if path == "/_admin/faults" and post:
                self.server.faults = body or []
                return {"faults": len(self.server.faults)}
            if path == "/_admin/requests":
                if post:
                    self.server.log.clear()
                return list(self.server.log)
        raise GatewayError(404, f"Unknown admin call {'POST' if post else 'GET'} {path}")

    def _authorize(self) -> None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise GatewayError(401, "Authentication required: use your API key as the user name")
        user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        if user != self.server.key:
            raise GatewayError(401, "Authentication failed: invalid API key")

    def _answer(self, path: str, p: dict[str, str]) -> object:
        """The JSON body of every endpoint but get_range."""
        store = self.server.store
        if path == "/v0/metadata.list_datasets":
            return store.datasets()
        if path == "/v0/metadata.list_schemas":
            return store.schemas(p.get("dataset", ""))
        if path == "/v0/metadata.get_dataset_range":
            dataset = p.get("dataset", "")
            files = (f for s in store.schemas(dataset) for f in (store.root / dataset / s).glob("*.dbn.zst"))
            days = sorted(f.name[:10] for f in files)
            return {"start": f"{days[0]}T00:00:00.000000000Z",
                    "end": f"{date.fromisoformat(days[-1]) + timedelta(days=1)}T00:00:00.000000000Z"}
        if path == "/v0/symbology.resolve":
            return self._resolve(p)
        if path in ("/v0/metadata.get_cost", "/v0/metadata.get_record_count", "/v0/metadata.get_billable_size"):
            request = self._request(p)
            count, size = self._usage(request)
            if path.endswith("get_record_count"):
                return count
            if path.endswith("get_billable_size"):
                return size
            return price(request.schema, size)
        raise GatewayError(404, f"Unknown endpoint {path}")

    def _usage(self, request: RangeRequest) -> tuple[int, int]:
        """The request's record count and billable size (its records' bytes)."""
        store = self.server.store
        count = size = 0
        for arr in store.records(request.dataset, request.schema, request.spans, request.start, request.end):
            count, size = count + len(arr), size + arr.nbytes
        return count, size

    def _resolve(self, p: dict[str, str]) -> dict[str, object]:
        symbols = parse_symbols(p)
        if not p.get("start_date"):
            raise GatewayError(422, "Invalid `start_date`: required")
        start = parse_time(p["start_date"], "start_date")
        end = parse_time(p["end_date"], "end_date") if p.get("end_date") else start + 86400 * NS
        stype_in = p.get("stype_in", "raw_symbol")
        mappings, not_found = self.server.store.resolve(p.get("dataset", ""), symbols, stype_in, start, end)
        return {"result": mappings, "symbols": symbols, "stype_in": stype_in,
                "stype_out": p.get("stype_out", "instrument_id"), "start_date": p["start_date"],
                "end_date": p.get("end_date"), "partial": [], "not_found": not_found, "message": "OK", "status": 0}

    def _request(self, p: dict[str, str]) -> RangeRequest:
        dataset, schema = p.get("dataset", ""), p.get("schema", "")
        self.server.store.check(dataset, schema)
        symbols = parse_symbols(p)
        start = parse_time(p.get("start", ""), "start")
        end = parse_time(p["end"], "end") if p.get("end") else start + 86400 * NS
        if end <= start:
            raise GatewayError(422, "Invalid time range: `end` must be after `start`")
        stype_in = p.get("stype_in", "raw_symbol")
        mappings, not_found = self.server.store.resolve(dataset, symbols, stype_in, start, end)
        spans = None if symbols == [ALL_SYMBOLS] else [
            (int(sym) if stype_in == "instrument_id" else int(i["s"]),
             day_start_ns(date.fromisoformat(i["d0"])), day_start_ns(date.fromisoformat(i["d1"])))
            for sym, ivs in mappings.items() for i in ivs]
        return RangeRequest(dataset, schema, start, end, symbols, stype_in, p.get("stype_out", "instrument_id"),
                            mappings, not_found, spans)

    def _stream(self, request: RangeRequest, fault: dict[str, Any] | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        budget = None
        if fault and fault["kind"] == "truncate":
            budget = int(fault.get("after_bytes", 200))
        for block in zstd_blocks(request.dbn(self.server.store)):
            sent += self._chunk(block, budget, sent, fault)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes, budget: int | None, sent: int, fault: dict[str, Any] | None) -> int:
        if not data:
            return 0
        if budget is not None and sent + len(data) > budget:
            data = data[: max(budget - sent, 1)]
            self.wfile.write(f"{len(data) + 1000:x}\r\n".encode() + data)
            self.wfile.flush()
            self.close_connection = True
            raise ConnectionAbortedError("truncated on purpose")
        if fault and fault["kind"] == "slow":
            time.sleep(float(fault.get("delay", 0.5)))
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        return len(data)

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None,
              fault: dict[str, Any] | None = None) -> None:
        """A JSON reply; a "slow" fault delays it, a "truncate" one cuts it after `after_bytes` bytes."""
        payload = json.dumps(body).encode()
        if fault and fault["kind"] == "slow":
            time.sleep(float(fault.get("delay", 0.5)))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if fault and fault["kind"] == "truncate":
            self.wfile.write(payload[: min(int(fault.get("after_bytes", 200)), len(payload) - 1)])
            self.wfile.flush()
            raise ConnectionAbortedError("truncated on purpose")
        self.wfile.write(payload)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionAbortedError:
            self.close_connection = True


def ensure_certificate(cert_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made once with openssl."""
    cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
    if not cert.exists() or not key.exists():
        cert_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "365", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
    return cert, key


def serve(data: Path, port: int, cert_dir: Path, key: str, port_file: Path | None, batch_dir: Path | None = None,
          polls_per_state: int = 1) -> None:
    import ssl

    from tools.gateway_batch import BatchGateway  # which imports this module as tools.gateway: see __main__

    cert, private_key = ensure_certificate(cert_dir)
    server = BatchGateway(("127.0.0.1", port), ReplayStore(data), key, batch_dir or cert_dir.resolve().parent / "batch",
                          polls_per_state)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, private_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    actual = server.server_address[1]
    if port_file:
        port_file.write_text(str(actual))
    print(f"replay gateway on https://127.0.0.1:{actual} serving {data}", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--key-env", default="DATABENTO_API_KEY",
                        help="environment variable holding the API key to accept")
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--batch-dir", type=Path, help="where batch jobs live (default: <cert-dir>/../batch)")
    parser.add_argument("--batch-polls-per-state", type=int, default=1,
                        help="polls a batch job spends in each state before done (0: done on the first poll)")
    args = parser.parse_args()
    import os

    key = os.environ.get(args.key_env, "")
    if not key:
        parser.error(f"{args.key_env} is not set")
    serve(args.data, args.port, args.cert_dir, key, args.port_file, args.batch_dir, args.batch_polls_per_state)


if __name__ == "__main__":
    # Run as tools.gateway, the one module object tools/gateway_batch.py extends (not a second copy, __main__).
    from tools.gateway import main as run

    run()
