"""When to try a request again, and how long to wait first: a pure policy, tested without sleeping."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a request again and how long to wait first.

    Backoff is exponential with full jitter (a uniform wait between 0 and
    min(backoff_cap, backoff_base * 2**(attempt - 1))), so concurrent senders hitting the same
    overloaded intake spread out. A `Retry-After` answer (seconds or an HTTP date) replaces the
    backoff. Pure: randomness and the wall clock are passed in, so tests need no sleeping.
    """

    max_attempts: int = 6
    backoff_base: float = 0.2
    backoff_cap: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def retryable(self, status: int | None) -> bool:
        """None stands for no answer at all (connection error or timeout): always worth retrying."""
        return status is None or status in RETRYABLE_STATUSES or 500 <= status <= 599

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The jittered wait after the `attempt`-th (1-based) attempt failed."""
        return rand() * min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))

    def delay(
        self,
        attempt: int,
        retry_after: str | None = None,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] = time.time,
    ) -> float:
        """Seconds to wait before the next attempt: the intake's `Retry-After` if usable, else backoff."""
        asked = parse_retry_after(retry_after, now) if retry_after else None
        return self.backoff(attempt, rand) if asked is None else asked


def parse_retry_after(value: str, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds from now; None when it is neither a number nor an HTTP date."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
