"""Databento failures classified once: 429, 5xx, broken streams and transport errors are transient;
every other 4xx is terminal. The API key never reaches a message."""

from __future__ import annotations

import requests
from databento.common.error import BentoClientError, BentoError, BentoHttpError, BentoServerError

from lake.errors import HistError, TerminalError, TransientError


class RateLimited(TransientError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def classify(exc: BaseException, key: str) -> HistError:
    """Turn a client exception into a TransientError or TerminalError with a one-line message."""
    if isinstance(exc, HistError):
        return exc
    if isinstance(exc, BentoHttpError):
        message = _redact(f"HTTP {exc.http_status}: {exc.message or 'no detail'}", key)
        if exc.http_status == 429:
            return RateLimited(message, _retry_after(exc))
        if isinstance(exc, BentoServerError):
            return TransientError(message)
        if isinstance(exc, BentoClientError):
            return TerminalError(message)
    cut_off = requests.exceptions.ChunkedEncodingError  # an answer broken off midway
    if isinstance(exc, BentoError | requests.ConnectionError | requests.Timeout | cut_off | ConnectionError
                  | TimeoutError):
        return TransientError(_redact(f"{type(exc).__name__}: {exc}", key))
    return TerminalError(_redact(f"{type(exc).__name__}: {exc}", key))


def _retry_after(exc: BentoHttpError) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text
