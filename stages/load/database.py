"""Connecting to TimescaleDB: retried while the server is unreachable, then one clear error that
never shows the password."""

from __future__ import annotations

import logging

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from lake.errors import TransientError
from schemas.secrets import Secret, mask_dsn

log = logging.getLogger(__name__)


def _retried(state: RetryCallState) -> None:
    log.info("database unreachable (attempt %d); retrying", state.attempt_number,
                extra={"event": "retried", "stage": "load", "attempt": state.attempt_number})


def connect(dsn: Secret, attempts: int = 5, max_wait_seconds: float = 4.0) -> psycopg.Connection:
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            stop=stop_after_attempt(attempts),
            before_sleep=_retried,
            wait=wait_exponential(multiplier=0.25, max=max_wait_seconds),
            reraise=True,
        ):
            with attempt:
                conn = psycopg.connect(dsn.reveal(), autocommit=True, connect_timeout=5)
                conn.execute("SET TimeZone = 'UTC'")  # dates and time buckets in UTC, whatever the server's zone
                return conn
    except psycopg.OperationalError as exc:
        reason = mask_dsn(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise TransientError(
            f"database unreachable at {mask_dsn(dsn.reveal())} after {attempts} attempts: {reason}"
        ) from None
    raise AssertionError("unreachable")
