"""Shared per-camera JPEG encoders behind ``snapshot.jpg`` and ``live.mjpeg``.

One :class:`CameraJpeg` per camera caches the JPEG of the newest frame (keyed by frame
sequence and detections), so N snapshot requests or N live viewers cost one encode per
new frame. While at least one live viewer watches, a single producer task polls the
camera at ``http.mjpeg_fps`` and wakes every viewer when a newer JPEG is ready. Encoding
always runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from hub.web.render import render_jpeg

if TYPE_CHECKING:
    from detectors.detections import Detections
    from hub.config import ZoneConfig
    from hub.web.view import HubView
    from streams.frame import Frame

log = logging.getLogger(__name__)

FrameKey = tuple[int, float, bytes, tuple[str, ...]]


def _key(frame: Frame, dets: Detections | None) -> FrameKey:
    if dets is None:
        return (frame.seq, frame.captured_at, b"", ())
    return (frame.seq, frame.captured_at, dets.xyxy.tobytes() + dets.tracker_id.tobytes(), dets.labels)


class FeedClosed(Exception):
    """The live feed was shut down (app shutdown)."""


class CameraJpeg:
    """Cached annotated JPEG of one camera's newest frame, and the live producer."""

    def __init__(
        self,
        camera_id: str,
        view: HubView,
        zones: tuple[ZoneConfig, ...],
        *,
        quality: int,
        fps: float,
        on_encode: Callable[[str], None] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._view = view
        self._zones = zones
        self._quality = quality
        self._interval = 1.0 / fps
        self._on_encode = on_encode
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._key: FrameKey | None = None
        self._jpeg: bytes | None = None
        self.version = 0
        self.encodes = 0
        self.viewers = 0
        self.closed = False
        self._producer: asyncio.Task[None] | None = None

    async def latest(self) -> bytes | None:
        """JPEG of the newest frame (encoded at most once per frame), or None before the first frame."""
        item = self._view.latest_frame(self.camera_id)
        if item is None:
            return self._jpeg
        frame, dets = item
        key = _key(frame, dets)
        async with self._lock:
            if key != self._key:
                jpeg = await asyncio.to_thread(render_jpeg, frame, dets, self._zones, quality=self._quality)
                self._key, self._jpeg = key, jpeg
                self.encodes += 1
                if self._on_encode is not None:
                    self._on_encode(self.camera_id)
                async with self._changed:
                    self.version += 1
                    self._changed.notify_all()
            return self._jpeg

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.latest()
            except Exception:  # keep the feed alive; one bad frame must not end it
                log.exception("live view of camera %s: encoding failed", self.camera_id)
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))

    async def wait_newer(self, seen: int, wait_s: float) -> tuple[int, bytes] | None:
        """Next JPEG newer than version ``seen``; None on timeout; FeedClosed after shutdown."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.closed or (self.version != seen and self._jpeg)),
                    wait_s,
                )
            if self.closed:
                raise FeedClosed(self.camera_id)
            if self.version == seen or self._jpeg is None:
                return None
            return self.version, self._jpeg

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[CameraJpeg]:
        """Register a live viewer; the producer runs while anyone watches."""
        if self.closed:
            raise FeedClosed(self.camera_id)
        self.viewers += 1
        if self._producer is None or self._producer.done():
            self._producer = asyncio.create_task(self._produce(), name=f"mjpeg-{self.camera_id}")
        try:
            yield self
        finally:
            self.viewers -= 1
            if self.viewers == 0:
                await self._stop_producer()

    async def _stop_producer(self) -> None:
        task, self._producer = self._producer, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        self.closed = True
        async with self._changed:
            self._changed.notify_all()
        await self._stop_producer()


class LiveFeeds:
    """All cameras' shared encoders, created on first use."""

    def __init__(self, view: HubView, on_encode: Callable[[str], None] | None = None) -> None:
        self._view = view
        self._on_encode = on_encode
        self._feeds: dict[str, CameraJpeg] = {}
        self.closed = False

    def known(self, camera_id: str) -> bool:
        if any(c.id == camera_id for c in self._view.cfg.cameras):
            return True
        return any(c.get("id") == camera_id for c in self._view.cameras())

    def get(self, camera_id: str) -> CameraJpeg:
        feed = self._feeds.get(camera_id)
        if feed is None:
            if self.closed:
                raise FeedClosed(camera_id)
            zones = next((tuple(c.zones) for c in self._view.cfg.cameras if c.id == camera_id), ())
            http = self._view.cfg.http
            feed = CameraJpeg(camera_id, self._view, zones, quality=http.jpeg_quality, fps=http.mjpeg_fps,
                              on_encode=self._on_encode)
            self._feeds[camera_id] = feed
        return feed

    def viewers(self) -> dict[str, int]:
        return {cam: feed.viewers for cam, feed in self._feeds.items()}

    async def close(self) -> None:
        self.closed = True
        await asyncio.gather(*(feed.close() for feed in self._feeds.values()))
