"""When to try a failed delivery again: an exponential schedule with jitter and throttling.

The default schedule is Svix's (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight
attempts over about 27.5 hours). Following the Standard Webhooks spec, 429/502/503/504 mean
"throttle": the scheduled delay is multiplied and ``Retry-After`` is honoured, clamped to
``max_retry_after`` so a receiver cannot park a delivery forever; 410 Gone disables the endpoint
(anchors-reliability W9).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.webhooks.sender import AttemptResult

__all__ = ["DEFAULT_SCHEDULE", "THROTTLE_STATUSES", "RetryPolicy"]

DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
THROTTLE_STATUSES = frozenset({429, 502, 503, 504})


class RetryPolicy:
    """Computes the delay before the next attempt of a delivery.

    ``schedule[i]`` is the delay before attempt ``i + 1`` (``schedule[0]`` is the first attempt, so
    the schedule's length is the number of attempts).

    Args:
        schedule: delays in seconds, one per attempt.
        jitter: each delay is multiplied by a uniform factor in ``[1 - jitter, 1 + jitter]``.
        throttle_multiplier: extra factor for 429/502/503/504 answers.
        max_retry_after: the largest ``Retry-After`` honoured, in seconds.
        rng: the random source (inject a seeded one in tests).
    """

    def __init__(
        self,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        *,
        jitter: float = 0.1,
        throttle_multiplier: float = 2.0,
        max_retry_after: float = 3600 * 10,
        rng: random.Random | None = None,
    ) -> None:
        self.schedule = tuple(float(d) for d in schedule)
        # Finite too: an inf delay would be accepted and the retry silently never made (M10).
        if not self.schedule or not all(0 <= d < math.inf for d in self.schedule):
            raise ConfigurationError(
                "retry schedule must be a non-empty list of finite delays >= 0"
            )
        if not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")
        if not 1 <= throttle_multiplier < math.inf:
            raise ConfigurationError(
                f"throttle_multiplier must be >= 1, got {throttle_multiplier!r}"
            )
        if not 0 <= max_retry_after < math.inf:
            raise ConfigurationError(f"max_retry_after must be >= 0, got {max_retry_after!r}")
        self.jitter = jitter
        self.throttle_multiplier = throttle_multiplier
        self.max_retry_after = max_retry_after
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(schedule={self.schedule!r}, jitter={self.jitter}, "
            f"throttle_multiplier={self.throttle_multiplier}, "
            f"max_retry_after={self.max_retry_after})"
        )

    @property
    def max_attempts(self) -> int:
        """The number of attempts a delivery gets (the schedule's length)."""
        return len(self.schedule)

    def next_delay(self, attempt: int, result: AttemptResult) -> float | None:
        """Return the delay before the next attempt, or None when the delivery is done.

        Args:
            attempt: attempts made so far, including the one that produced ``result`` (1-based).
            result: the outcome of that attempt.

        Returns:
            Seconds to wait; None after a success or after the last attempt. A 410 still gets a
            delay: the caller disables the endpoint (:meth:`disables_endpoint`) and the delivery
            waits for it to be re-enabled or replayed.

        Raises:
            ValueError: when ``attempt`` is below 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt!r}")
        if result.ok or attempt >= len(self.schedule):
            return None
        delay = self.schedule[attempt]
        if result.status in THROTTLE_STATUSES:
            delay *= self.throttle_multiplier
        if self.jitter:
            delay *= self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        if result.retry_after is not None:
            # Never earlier than the receiver asked, never later than the clamp allows.
            asked = min(max(result.retry_after, 0.0), self.max_retry_after)
            delay = max(delay, asked)
        return delay

    def disables_endpoint(self, result: AttemptResult) -> bool:
        """Return True when the answer means "stop sending here" (410 Gone, Standard Webhooks).

        Args:
            result: the outcome of an attempt.
        """
        return result.status == 410 and result.error is None
