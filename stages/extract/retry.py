"""Retrying transient failures with tenacity, from the config's retry_policy: exponential backoff with
jitter, except that a 429's Retry-After is honoured."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from lake.errors import TransientError
from schemas.config import RetryPolicy
from stages.extract.errors import RateLimited

T = TypeVar("T")


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=policy.initial_backoff_seconds, max=policy.max_backoff_seconds,
                                      jitter=policy.jitter_seconds)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_backoff_seconds)
        return float(backoff(state))

    return wait


def with_retries(policy: RetryPolicy, attempt: Callable[[], T],
                 on_retry: Callable[[RetryCallState], None] | None = None) -> T:
    """Run `attempt` until it succeeds, raises a non-transient error, or attempts run out (the last
    TransientError is then raised)."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(policy.max_attempts),
        wait=_wait(policy),
        before_sleep=on_retry,
        reraise=True,
    )
    return retrying(attempt)
