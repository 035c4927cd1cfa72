"""Where a stage's chunks run: a thread pool in this process, or tasks on a Dask distributed cluster
(`--scheduler tcp://host:8786`). Both stop cleanly: on Ctrl-C (or any error) the chunks in hand
finish and commit, and the ones still queued never start, so an interrupted run ends quickly and a
rerun resumes from the manifest.

A chunk task must be picklable to go to a cluster: stages pass module-level functions bound to
settings, and lakes and adapters travel as their names (their secrets come from each worker's own
environment, never over the wire)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from lake.formats import ManifestEvent

T = TypeVar("T")
R = TypeVar("R")
TASK_RETRIES = 2  # besides Dask rescheduling the tasks of a worker that died


class ChunkPool(Protocol):
    def run(self, task: Callable[[T], R], items: Sequence[T], on_result: Callable[[R], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> list[R | None]:
        """`task(item)` for every item, results in item order (None for an item never started because
        `should_stop` said so). `on_result` is called as each finishes, from any thread."""


class LocalPool:
    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self.executor = executor

    def run(self, task: Callable[[T], R], items: Sequence[T], on_result: Callable[[R], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> list[R | None]:
        def one(item: T) -> R | None:
            if should_stop():
                return None
            result = task(item)
            if on_result is not None:
                on_result(result)
            return result
        return list(self.executor.map(one, items))


class DaskPool:
    """Each item is one task on the cluster; results come back to this process as they finish."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def run(self, task: Callable[[T], R], items: Sequence[T], on_result: Callable[[R], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> list[R | None]:
        from distributed import as_completed

        futures = [self.client.submit(task, item, pure=False, retries=TASK_RETRIES) for item in items]
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[R | None] = [None] * len(futures)
        try:
            for future in as_completed(futures, loop=self.client.loop):  # type: ignore[no-untyped-call]
                results[index[future.key]] = result = future.result()
                if on_result is not None:
                    on_result(result)
                if should_stop():
                    break
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        return results


def committed_only(on_chunk: Callable[[ManifestEvent], None] | None) -> Callable[[object], None]:
    """An `on_result` that passes committed events on (not skips or failure reasons)."""
    def call(outcome: object) -> None:
        if on_chunk is not None and isinstance(outcome, ManifestEvent):
            on_chunk(outcome)
    return call


@contextmanager
def chunk_workers(workers: int, name: str, scheduler: str | None = None) -> Iterator[ChunkPool]:
    """`workers` threads here, or the cluster at `scheduler` (which sizes itself)."""
    if scheduler:
        yield DaskPool(cluster_client(scheduler), name)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        yield LocalPool(pool)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def cluster_client(scheduler: str) -> Any:
    """One connection per scheduler and process (connecting takes a moment)."""
    from lake.errors import ConfigError

    with _clients_lock:
        if scheduler not in _clients:
            try:
                from distributed import Client
            except ImportError as exc:
                raise ConfigError(f"--scheduler {scheduler}: the cluster extra is not installed "
                                  "(pip install -e '.[cluster]')") from exc
            try:
                _clients[scheduler] = Client(scheduler, timeout="20s", set_as_default=False)  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there "
                                  f"({str(exc).splitlines()[0]})") from exc
        return _clients[scheduler]
