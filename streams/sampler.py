"""Pick frames at a target rate by their timestamps (not by counting frames)."""

from __future__ import annotations


class Sampler:
    """Accepts the first frame at or after each ``1/fps`` tick of media time.

    Ticks advance by exactly ``1/fps`` so the long-run rate is ``fps`` even when the source
    rate is not a multiple of it; a gap longer than one tick restarts the ticks at the frame
    (no bursts after a stall). Timestamps jumping back, or forward by more than
    ``max_gap`` seconds (a reconnect, a camera restart), restart it as well.

    >>> s = Sampler(5)
    >>> [i for i in range(25) if s.accept(i / 25)]
    [0, 5, 10, 15, 20]
    """

    def __init__(self, fps: float, *, max_gap: float = 5.0) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.interval = 1.0 / fps
        self.tolerance = min(0.005, self.interval * 0.05)
        self.max_gap = max_gap
        self._next: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        self._next = None
        self._last = None

    def accept(self, t: float) -> bool:
        """True if the frame at media time ``t`` (seconds) should be kept."""
        last, self._last = self._last, t
        if last is not None and (t < last - self.interval or t > last + self.max_gap):
            self._next = None
        if self._next is None or t >= self._next - self.tolerance:
            if self._next is None or t - self._next >= self.interval:
                self._next = t + self.interval
            else:
                self._next += self.interval
            return True
        return False
