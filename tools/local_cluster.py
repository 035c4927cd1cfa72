"""A cluster on loopback for tests and benchmarks that run hist with its lake on S3 and its work on Dask.

Everything speaks the real protocols, and the callers start and stop all of it themselves: a
standalone moto S3 server (HTTP, in its own process) behind a small TCP proxy that a test can take down to
make "S3 unreachable for a while", and a Dask scheduler with separate worker processes (no nanny, so a
SIGKILLed worker stays dead). Nothing is mocked inside the process under test, and nothing is left running.

Use: ``with start_moto(log_dir) as s3, start_dask_cluster(env) as cluster: ...``
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
# Fake credentials for moto, assembled at runtime so they never look like a real key in the source.
FAKE_KEY_ID = "test" + "key"
FAKE_SECRET = "test" + "secret"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _reset(sock: socket.socket, how: int = socket.SHUT_RD) -> None:
    """Abort a connection: wake its readers (SHUT_RD sends nothing); closing it afterwards sends a TCP reset."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps the process."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------------------------
# TCP proxy


class _Pipe:
    """One proxied connection: client <-> upstream, pumped by two daemon threads."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.killed = False
        self.closed = threading.Event()
        self._open_directions = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        for src, dst in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pump, args=(src, dst), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            self.kill()
        else:
            if not self.killed:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
        finally:
            with self._lock:
                self._open_directions -= 1
                last = self._open_directions == 0
            if last:
                self.client.close()
                self.upstream.close()
                self.proxy._forget(self)
                self.closed.set()

    def kill(self, how: int = socket.SHUT_RD) -> None:
        """Reset both ends: the pump threads wake up, and the last one closes the sockets (RST to both peers)."""
        self.killed = True
        _reset(self.client, how)
        _reset(self.upstream, how)


class TcpProxy:
    """A threaded TCP forwarder on ``127.0.0.1:port`` to ``target``, which a test can take down and bring back.

    When ``down()`` returns, nothing listens on the port (new connections are refused) and every open connection
    has been reset. ``up()`` listens on the same port again: the port stays reserved by a bound, non-listening socket
    (SO_REUSEPORT) for the proxy's whole life, so nothing else can take it during an outage.
    """

    def __init__(self, target_host: str, target_port: int, host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._closed = False
        self._reservation = self._socket()
        self._reservation.bind((host, 0))
        self.port = int(self._reservation.getsockname()[1])
        self.up()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock

    def up(self) -> None:
        """Forward connections again (same port). No-op if already up."""
        with self._lock:
            if self._closed:
                raise RuntimeError("TcpProxy is closed")
            if self._listener is not None:
                return
            listener = self._socket()
            try:
                listener.bind((self.host, self.port))
                listener.listen(128)
                listener.settimeout(0.2)
            except OSError:
                listener.close()
                raise
            self._listener = listener
            self._acceptor = threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy-accept",
                                              daemon=True)
            self._acceptor.start()

    def down(self) -> None:
        """Refuse new connections and reset every open one. No-op if already down."""
        with self._lock:
            listener, self._listener = self._listener, None
            acceptor, self._acceptor = self._acceptor, None
            pipes = list(self._pipes)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            if acceptor is not None:
                acceptor.join(timeout=5)
            listener.close()
        for pipe in pipes:
            pipe.kill()
        deadline = time.monotonic() + 2
        for pipe in pipes:
            if not pipe.closed.wait(timeout=max(0.0, deadline - time.monotonic())):
                pipe.kill(socket.SHUT_RDWR)  # a pump stuck in sendall(): wake it the hard way
                pipe.closed.wait(timeout=2)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """``with proxy.outage(): ...`` — down inside the block, up again after it (even on error)."""
        self.down()
        try:
            yield
        finally:
            self.up()

    def outage_for(self, seconds: float) -> threading.Timer:
        """Take the proxy down now and bring it up after `seconds` on a timer thread (returned, already started)."""
        self.down()
        timer = threading.Timer(seconds, self._up_unless_closed)
        timer.daemon = True
        with self._lock:
            self._timers.append(timer)
        timer.start()
        return timer

    def _up_unless_closed(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.up()

    def close(self) -> None:
        """Stop for good: cancel pending timers, reset connections, release the port."""
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        self.down()
        with self._lock:
            self._closed = True
        for timer in timers:
            if timer is not threading.current_thread():
                timer.join(timeout=5)
        self.down()  # a timer that fired just before cancel() may have brought it up again
        self._reservation.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                if self._listener is not listener:
                    return
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                client.close()
                continue
            pipe = _Pipe(self, client, upstream)
            with self._lock:
                current = self._listener is listener
                if current:
                    self._pipes.add(pipe)
            if not current:  # went down between accept() and here
                for sock in (client, upstream):
                    _reset(sock)
                    sock.close()
                return
            pipe.start()


# --------------------------------------------------------------------------------------------------------------
# moto S3 server


@dataclass
class S3Endpoint:
    """A running moto S3 server. `url` is moto itself; `env` points clients at the proxy in front of it."""

    url: str
    env: dict[str, str]
    proxy: TcpProxy
    log_path: Path
    pid: int

    @property
    def proxy_url(self) -> str:
        return self.proxy.url

    def client(self) -> Any:
        """A boto3 S3 client talking to moto directly (never through the proxy, so outages don't affect it)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=FAKE_KEY_ID,
                            aws_secret_access_key=FAKE_SECRET)

    def new_bucket(self, prefix: str) -> str:
        """Create a fresh bucket named ``<prefix>-<10 hex>`` (prefix lowercased and sanitised) and return its name."""
        clean = "".join(c if c.isalnum() or c == "-" else "-" for c in prefix.lower()).strip("-")[:40] or "hist"
        name = f"{clean}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name


def _wait_http(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode} before answering; log:\n"
                               f"{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError as error:  # any HTTP answer means it is up
            error.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer at {url} within {timeout:.0f} s; log:\n"
                                   f"{log_path.read_text(errors='replace')}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def start_moto(log_dir: Path) -> Iterator[S3Endpoint]:
    """A standalone moto S3 server, behind a TcpProxy that `env` points at."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = log_dir / "moto_server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(BIN / "moto_server"), "-H", LOOPBACK, "-p", str(port)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    proxy: TcpProxy | None = None
    try:
        _wait_http(url, process, log_path, timeout=20)
        proxy = TcpProxy(LOOPBACK, port)
        env = {
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_DEFAULT_REGION": REGION,
        }
        yield S3Endpoint(url=url, env=env, proxy=proxy, log_path=log_path, pid=process.pid)
    finally:
        if proxy is not None:
            proxy.close()
        _stop(process)


# --------------------------------------------------------------------------------------------------------------
# Dask cluster


@dataclass
class DaskCluster:
    """A Dask scheduler and worker processes on loopback. A context manager; `close()` is idempotent."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    log_dir: Path
    _own_log_dir: bool = False
    _log_files: list[IO[bytes]] = field(default_factory=list)
    _final_logs: str | None = None

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker `index` and reap it (no nanny: it stays dead)."""
        process = self.workers[index]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.wait()

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes still running."""
        return [process.pid for process in self.workers if process.poll() is None]

    def logs(self) -> str:
        """The text of every log file (scheduler first), for failure messages. Still works after close()."""
        if self._final_logs is not None:
            return self._final_logs
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"===== {path.name} =====\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def close(self) -> None:
        """Terminate workers and scheduler (SIGTERM, SIGKILL after a few seconds); never leaves a process."""
        if self._final_logs is not None:
            return
        processes = [*self.workers, self.scheduler]
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        for log in self._log_files:
            log.close()
        self._final_logs = self.logs()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
            return True
        time.sleep(0.1)
    return False


def start_dask_cluster(env: dict[str, str], workers: int = 2, threads: int = 2, *, log_dir: Path | None = None,
                       timeout: float = 30) -> DaskCluster:
    """Start ``dask scheduler`` and `workers` ``dask worker --no-nanny`` processes with ``os.environ | env``.

    Returns once the scheduler sees every worker. Use as ``with start_dask_cluster(...) as cluster:`` (or call
    ``close()``). Logs go to `log_dir` (kept) or to a temporary directory (removed at close, text kept for
    ``logs()``). The repository root is put on the processes' PYTHONPATH, so tasks that refer to functions in
    ``tests.*`` unpickle on the workers.
    """
    own = log_dir is None
    directory = Path(tempfile.mkdtemp(prefix="hist-dask-")) if log_dir is None else log_dir
    directory.mkdir(parents=True, exist_ok=True)
    merged = os.environ | env
    merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), merged.get("PYTHONPATH", "")) if p)
    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"

    log_files: list[IO[bytes]] = []

    def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (directory / f"{name}.log").open("wb")
        log_files.append(log)
        return subprocess.Popen([str(BIN / "dask"), *args], env=merged, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)

    try:
        scheduler = spawn("scheduler", ["scheduler", "--host", LOOPBACK, "--port", str(port), "--no-dashboard"])
    except BaseException:
        for log in log_files:
            log.close()
        raise
    cluster = DaskCluster(address=address, scheduler=scheduler, workers=[], log_dir=directory, _own_log_dir=own,
                          _log_files=log_files)
    atexit.register(cluster.close)
    try:
        if not _wait_port(port, scheduler, timeout):
            raise RuntimeError(f"dask scheduler did not listen on {address} within {timeout:.0f} s")
        scratch = directory / "scratch"
        for i in range(workers):
            cluster.workers.append(spawn(f"worker-{i}", [
                "worker", address, "--name", f"worker-{i}", "--nthreads", str(threads), "--no-nanny",
                "--no-dashboard", "--host", LOOPBACK, "--local-directory", str(scratch / f"worker-{i}"),
            ]))
        from distributed import Client

        deadline = time.monotonic() + timeout
        with Client(address, timeout=timeout) as client:  # type: ignore[no-untyped-call]
            while True:
                dead = [f"worker-{i} (exit {w.poll()})" for i, w in enumerate(cluster.workers) if w.poll() is not None]
                if dead:
                    raise RuntimeError(f"{', '.join(dead)} exited during startup")
                try:
                    client.wait_for_workers(workers, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                    break
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
    except BaseException as error:
        logs = cluster.logs()
        cluster.close()
        if isinstance(error, Exception):
            raise RuntimeError(f"Dask cluster did not start: {error!r}; logs:\n{logs}") from error
        raise
    return cluster
