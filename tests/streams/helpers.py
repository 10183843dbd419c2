"""Small async helpers for reader tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from streams.reader import StreamReader


async def wait_until(cond: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``cond`` every 20 ms; return the seconds it took; fail with ``what`` on timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within:.1f} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@dataclass
class StatusLog:
    """Records on_status calls and checks they arrive on the event loop thread."""

    events: list[tuple[str, bool, str]] = field(default_factory=list)
    loop_thread: int = field(default_factory=threading.get_ident)
    wrong_thread: int = 0

    def __call__(self, camera_id: str, online: bool, reason: str) -> None:
        if threading.get_ident() != self.loop_thread:
            self.wrong_thread += 1
        self.events.append((camera_id, online, reason))

    @property
    def states(self) -> list[bool]:
        return [online for _, online, _ in self.events]


@contextlib.asynccontextmanager
async def running(reader: StreamReader) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``reader`` in a task; cancel it (and check the thread ended) on exit."""
    task = asyncio.create_task(reader.run(), name=f"reader-{reader.camera_id}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
