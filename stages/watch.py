"""Watch mode: watchdog notices manifest appends and runs the next stages on what was committed.

It resumes from the manifest (the first pass catches up on everything pending), debounces bursts of
commits, polls as a fallback where file events are unreliable, and on SIGINT/SIGTERM lets the chunk
in hand finish before returning."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)
Pass = Callable[[Callable[[], bool]], None]


class _ManifestChanged(FileSystemEventHandler):
    def __init__(self, manifest: Path, wake: threading.Event) -> None:
        self.manifest = str(manifest)
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if str(event.src_path) == self.manifest or str(getattr(event, "dest_path", "")) == self.manifest:
            self.wake.set()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` instead of interrupting the chunk in hand."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch(manifest: Path | None, passes: list[Pass], stop: threading.Event, debounce_seconds: float = 0.3,
          poll_seconds: float = 10.0) -> int:
    """Run `passes` (each given a should-stop callable) whenever the manifest file changes (every
    `poll_seconds` regardless, and only then for a manifest that is not a local file: an object
    store sends no file events), until `stop`; returns the number of rounds run."""
    wake = threading.Event()
    wake.set()  # catch up on whatever is pending from before a restart
    observer = Observer()
    if manifest is not None:
        manifest.parent.mkdir(parents=True, exist_ok=True)
        observer.schedule(_ManifestChanged(manifest, wake), str(manifest.parent), recursive=False)
        observer.start()
    rounds = 0
    try:
        while not stop.is_set():
            if not wake.wait(timeout=poll_seconds) and stop.is_set():
                break
            stop.wait(debounce_seconds)  # let a burst of commits land
            wake.clear()
            for run_pass in passes:
                if stop.is_set():
                    break
                run_pass(stop.is_set)
            rounds += 1
    finally:
        if observer.is_alive():
            observer.stop()
            observer.join(timeout=5)
    return rounds
