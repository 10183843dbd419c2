"""Jittered, capped exponential backoff for reconnect loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive reconnect attempts.

    The n-th consecutive failure waits ``min(maximum, initial * factor**n)`` scaled by a random
    factor in ``[1 - jitter, 1 + jitter]`` (capped at ``maximum``), so many cameras that fail
    together do not reconnect in lock-step. A connection that stayed healthy for
    ``reset_after`` seconds resets the sequence: its next failure waits ``initial`` again.

    >>> b = Backoff(initial=1.0, maximum=8.0, jitter=0.0)
    >>> [b.failure() for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> b.failure(connected_for=60.0)
    1.0
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.25
    reset_after: float = 30.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("need 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def failure(self, connected_for: float = 0.0) -> float:
        """Record a failed (or ended) connection; return how long to wait before the next try.

        ``connected_for`` is how long the connection that just ended was healthy (0 if it
        never came up).
        """
        if connected_for >= self.reset_after:
            self.attempt = 0
        base = min(self.maximum, self.initial * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        if self.jitter:
            base *= self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return min(self.maximum, base)

    def reset(self) -> None:
        self.attempt = 0
