"""Outbound calls through a blip: a transient failure (5xx, 429, timeout, reset connection)
is tried again with exponential backoff and jitter before the call fails.

tenacity does the waiting and counting; each failed attempt's outcome is kept, so the step
that made the call can say what happened on every try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from app.core.errors import DomainError
from app.core.settings import Settings

T = TypeVar("T")
# Besides 5xx: the 4xx answers that mean "not now" rather than "no".
TRANSIENT_STATUS = frozenset({408, 425, 429})
# No single wait longer than this, whatever the base: a run is waiting.
MAX_WAIT_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        """The operator's MLOPS_OUTBOUND_ATTEMPTS and MLOPS_OUTBOUND_BACKOFF_S."""
        return cls(attempts=settings.outbound_attempts, backoff_s=settings.outbound_backoff_s)


class Transient(Exception):
    """An attempt failed in a way that may pass; `error` is raised if no attempt is left."""

    def __init__(self, outcome: str, error: DomainError) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.error = error


def call(attempt: Callable[[], T], *, policy: RetryPolicy, log: list[str]) -> T:
    """attempt() until it returns or fails for good; each failure's outcome goes to `log`."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        # backoff_s, 2 x, 4 x… plus up to backoff_s of jitter, so callers spread out.
        wait=wait_exponential(multiplier=policy.backoff_s, max=MAX_WAIT_S)
        + wait_random(0, policy.backoff_s),
        retry=retry_if_exception_type(Transient),
        reraise=True,
    )

    def once() -> T:
        try:
            return attempt()
        except Transient as exc:
            log.append(exc.outcome)
            raise

    try:
        return retrying(once)
    except Transient as exc:
        # One attempt needs no list: the message already says what it met.
        if len(log) > 1:
            _note(exc.error, f"after {len(log)} attempts: {_numbered(log)}")
        raise exc.error from exc
    except DomainError as exc:
        # A lasting failure after transient ones: the earlier attempts are part of the story.
        if log:
            _note(exc, f"attempt {len(log) + 1}; before it {_numbered(log)}")
        raise


def summary(log: list[str], last: str) -> str:
    """`after 3 attempts (1: 503 Service Unavailable; 2: timed out; 3: 200 OK)`."""
    outcomes = [*log, last]
    return f"after {len(outcomes)} attempts ({_numbered(outcomes)})"


def _note(error: DomainError, note: str) -> None:
    error.detail = f"{error.detail} ({note})"
    error.args = (error.detail,)


def _numbered(outcomes: list[str]) -> str:
    return "; ".join(f"{n}: {outcome}" for n, outcome in enumerate(outcomes, start=1))
