"""Thread pools for a stage's chunks that stop cleanly: on Ctrl-C (or any error) the chunks in hand
finish and commit, and the ones still queued never start, so an interrupted run ends quickly and a
rerun resumes from the manifest."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


@contextmanager
def chunk_workers(workers: int, name: str) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
