"""StreamReader with file:// clips and an HTTP MJPEG device (a real aiohttp server)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web

from hub.errors import StreamAuthError
from streams.reader import StreamReader
from tests.streams.helpers import StatusLog, running, wait_until
from tests.support.media import bikes_clip

pytestmark = pytest.mark.timeout(60)


async def test_file_loops_at_the_clips_own_pace(clip: Path) -> None:
    status = StatusLog()
    reader = StreamReader("demo", clip.as_uri(), width=320, fps=5.0, loop=True, realtime=True,
                          on_status=status)
    async with running(reader):
        await wait_until(lambda: reader.stats.decoded > 0, 5, "the first frame")
        t0, d0 = time.monotonic(), reader.stats.decoded
        await asyncio.sleep(5.0)  # the clip is 4 s long: this crosses a loop point
        elapsed, decoded = time.monotonic() - t0, reader.stats.decoded - d0
        sampled = reader.stats.sampled
    assert 22 <= decoded / elapsed <= 28, f"paced at {decoded / elapsed:.1f} fps, clip is 25 fps"
    assert reader.stats.decoded > 100  # more than the clip's 100 frames: it looped
    assert 4.0 <= sampled / (elapsed + 0.2) <= 6.2
    assert reader.stats.reconnects == 0
    assert status.states == [True]  # a loop is not an outage


async def test_file_without_realtime_decodes_everything_then_goes_offline(clip: Path) -> None:
    status = StatusLog()
    reader = StreamReader("replay", clip.as_uri(), width=256, fps=5.0, realtime=False,
                          on_status=status)
    started = time.monotonic()
    await asyncio.wait_for(reader.run(), 10)  # a non-looping file ends; run() returns
    assert time.monotonic() - started < 3.0  # far faster than the clip's 4 s
    assert reader.stats.decoded == 100
    assert reader.stats.sampled == 20  # 4 s of media at 5 fps
    assert status.states == [True, False]
    assert "end of file" in (reader.last_error or "")
    frame = reader.latest()
    assert frame is not None
    assert frame.image.shape == (144, 256, 3)


async def test_bikes_clip_with_b_frames_decodes_in_order() -> None:
    reader = StreamReader("street", bikes_clip().as_uri(), width=320, fps=25.0, realtime=False)
    await asyncio.wait_for(reader.run(), 20)
    assert reader.stats.decoded == 250
    assert reader.stats.sampled == 250  # fps >= source rate keeps every frame
    frame = reader.latest()
    assert frame is not None
    assert frame.source_size == (640, 272)
    assert frame.image.shape == (136, 320, 3)


def _scene(i: int) -> np.ndarray:
    img = np.full((240, 320, 3), 40, np.uint8)
    x = (i * 16) % 300
    img[100:140, x:x + 20] = (0, 255, 0)  # a green bar moving right
    return img


@pytest.fixture
async def mjpeg_device() -> AsyncIterator[str]:
    """A far-edge HTTP MJPEG camera at 10 fps, Basic auth ``viewer:Mjpeg-pass``."""
    expected = "Basic " + base64.b64encode(b"viewer:Mjpeg-pass").decode()

    async def stream(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="cam"'})
        resp = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frameboundary"})
        await resp.prepare(request)
        i = 0
        try:
            while True:
                ok, jpg = cv2.imencode(".jpg", _scene(i), [cv2.IMWRITE_JPEG_QUALITY, 85])
                assert ok
                data = jpg.tobytes()
                await resp.write(b"--frameboundary\r\nContent-Type: image/jpeg\r\n"
                                 b"Content-Length: %d\r\n\r\n%s\r\n" % (len(data), data))
                i += 1
                await asyncio.sleep(0.1)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/video.mjpg", stream)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}/video.mjpg"
    finally:
        await runner.cleanup()


async def test_http_mjpeg_device(mjpeg_device: str) -> None:
    status = StatusLog()
    reader = StreamReader("edge", f"http://viewer:Mjpeg-pass@{mjpeg_device}", width=160, fps=5.0,
                          on_status=status)
    async with running(reader):
        await wait_until(lambda: reader.online, 10, "online")
        s0, t0 = reader.stats.sampled, time.monotonic()
        await asyncio.sleep(2.5)
        rate = (reader.stats.sampled - s0) / (time.monotonic() - t0)
        frame = reader.latest()
    assert 3.5 <= rate <= 6.5, f"sampled {rate:.2f} fps from a 10 fps MJPEG device"
    assert frame is not None
    assert frame.source_size == (320, 240)
    assert frame.image.shape == (120, 160, 3)
    green = (frame.image[:, :, 1] > 180) & (frame.image[:, :, 2] < 90)
    ys, _ = np.nonzero(green)
    assert green.sum() > 20
    assert 45 <= ys.mean() <= 75
    assert status.states == [True]


async def test_http_mjpeg_wrong_password(mjpeg_device: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reader = StreamReader("edge2", f"http://viewer:Bad-mjpeg-pw@{mjpeg_device}", width=160,
                          fps=5.0, auth_retry_s=30.0)
    async with running(reader):
        await wait_until(lambda: reader.last_error is not None, 10, "the auth failure")
        await asyncio.sleep(0.5)
    assert isinstance(reader.last_exception, StreamAuthError)
    assert reader.stats.attempts == 1
    assert "Bad-mjpeg-pw" not in caplog.text + (reader.last_error or "")
