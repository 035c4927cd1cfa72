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
For tests, /_admin/faults (POST a JSON list) injects faults into any endpoint — {"kind":
"429"|"500"|"truncate"|"slow", "count": n, "retry_after": s, "delay": s, "status": 5xx, "after_bytes": n,
"path": "/v0/..." (default /v0/timeseries.get_range), "match": {"start": "2024-01-03"}} — and
GET /_admin/requests returns the request log (POST clears it).
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: ReplayStore, key: str) -> None:
        super().__init__(address, Handler)
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
                if fault.get("path", "/v0/timeseries.get_range") == path and fault.get("count", 1) > 0 and matches:
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
        if urlparse(self.path).path == "/_admin/faults":
            with self.server.lock:
                self.server.faults = json.loads(body or "[]")
            self._json(200, {"faults": len(self.server.faults)})
            return
        if urlparse(self.path).path == "/_admin/requests":
            with self.server.lock:
                self.server.log.clear()
            self._json(200, [])
            return
        params = parse_qs(urlparse(self.path).query)
        params.update(parse_qs(body))
        self._dispatch(params)

    def _dispatch(self, raw: dict[str, list[str]]) -> None:
        path = urlparse(self.path).path
        params = {k: v[-1] for k, v in raw.items()}
        if path == "/_admin/requests":
            with self.server.lock:
                self._json(200, list(self.server.log))
            return
        with self.server.lock:
            self.server.log.append({"path": path, "params": params, "time": time.time()})
        try:
            self._authorize()
            fault = self.server.take_fault(path, params)
            if fault and fault["kind"] == "429":
                self._json(429, {"detail": "Too many requests"}, {"Retry-After": str(fault.get("retry_after", 1))})
            elif fault and fault["kind"] == "500":
                self._json(int(fault.get("status", 500)), {"detail": "Internal server error"})
            elif path == "/v0/timeseries.get_range":
                self._stream(self._request(params), fault)
            else:
                self._json(200, self._answer(path, params), fault=fault)
        except GatewayError as exc:
            self._json(exc.status, {"detail": exc.detail})

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
            count = size = 0
            for arr in store.records(request.dataset, request.schema, request.spans, request.start, request.end):
                count, size = count + len(arr), size + arr.nbytes
            if path.endswith("get_record_count"):
                return count
            if path.endswith("get_billable_size"):
                return size
            return round(size / 1e9 * PRICE_PER_GB.get(request.schema, DEFAULT_PRICE_PER_GB), 6)
        raise GatewayError(404, f"Unknown endpoint {path}")

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
        store = self.server.store
        compressor = zstandard.ZstdCompressor(level=1).compressobj()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        budget = None
        if fault and fault["kind"] == "truncate":
            budget = int(fault.get("after_bytes", 200))
        pieces = [compressor.compress(request.metadata(store.version(request.dataset, request.schema)))]
        for arr in store.records(request.dataset, request.schema, request.spans, request.start, request.end):
            pieces.append(compressor.compress(arr.tobytes()))
            if sum(map(len, pieces)) >= STREAM_BLOCK:
                sent += self._chunk(b"".join(pieces), budget, sent, fault)
                pieces = []
        pieces.append(compressor.flush())
        sent += self._chunk(b"".join(pieces), budget, sent, fault)
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


def serve(data: Path, port: int, cert_dir: Path, key: str, port_file: Path | None) -> None:
    import ssl

    cert, private_key = ensure_certificate(cert_dir)
    server = Gateway(("127.0.0.1", port), ReplayStore(data), key)
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
    args = parser.parse_args()
    import os

    key = os.environ.get(args.key_env, "")
    if not key:
        parser.error(f"{args.key_env} is not set")
    serve(args.data, args.port, args.cert_dir, key, args.port_file)


if __name__ == "__main__":
    main()
