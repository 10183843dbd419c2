"""JPEG snapshot cameras against a real HTTP camera: fetch_snapshot (Basic/Digest), StreamReader polling."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from hub.errors import StreamAuthError, StreamConnectError, StreamError
from streams.backoff import Backoff
from streams.reader import StreamReader
from streams.snapshot import fetch_snapshot, probe_snapshot
from tests.adapters.conformance import LoopLagMonitor
from tests.streams.helpers import StatusLog, running, wait_until
from tests.support.http_camera import HttpCamera

pytestmark = pytest.mark.timeout(60)

USER = "viewer"
PASSWORD = "Sn@p-s3cret pw"  # a space and an @: must be quoted in URLs, never logged
WRONG = "Wr0ng-snap-pw"


@pytest.fixture
async def camera(clip: Path) -> AsyncIterator[HttpCamera]:
    """An open (no auth) snapshot camera playing the 640×360 test clip."""
    async with HttpCamera(clip) as cam:
        yield cam


@pytest.fixture(params=[("basic", "MD5"), ("digest", "MD5"), ("digest", "SHA-256")],
                ids=["basic", "digest-md5", "digest-sha256"])
async def auth_camera(request: pytest.FixtureRequest, clip: Path) -> AsyncIterator[HttpCamera]:
    auth, algorithm = request.param
    async with HttpCamera(clip, user=USER, password=PASSWORD, auth=auth, algorithm=algorithm) as cam:
        yield cam


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


# -- fetch_snapshot ---------------------------------------------------------------------------
async def test_fetch_snapshot_without_auth(camera: HttpCamera) -> None:
    image = _decode(await fetch_snapshot(camera.url(), timeout_s=2.0))
    assert image.shape == (360, 640, 3)
    assert camera.log.schemes == ["none"]


async def test_fetch_snapshot_answers_the_scheme_the_camera_asks_for(
    auth_camera: HttpCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = _decode(await fetch_snapshot(auth_camera.url(), timeout_s=2.0))
    assert image.shape == (360, 640, 3)
    # One unauthenticated request to learn the challenge, then the scheme the camera wants.
    assert auth_camera.log.schemes == ["none", auth_camera.auth]
    assert auth_camera.log.refused == 1
    if auth_camera.auth == "digest":
        assert PASSWORD not in "\n".join(auth_camera.log.authorization)  # never sent in clear
        assert f"algorithm={auth_camera.algorithm}" in auth_camera.log.authorization[0]
    assert PASSWORD not in caplog.text


async def test_fetch_snapshot_wrong_password_is_an_auth_error(
    auth_camera: HttpCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StreamAuthError) as err:
        await fetch_snapshot(auth_camera.url(password=WRONG), timeout_s=2.0)
    assert "401" in str(err.value)
    assert WRONG not in str(err.value) + repr(err.value) + caplog.text
    assert len(auth_camera.log.paths) <= 3  # challenge, one answer (+ Basic's second try): no loop
    with pytest.raises(StreamAuthError, match="has none"):
        await fetch_snapshot(auth_camera.url(credentials=False), timeout_s=2.0)


async def test_fetch_snapshot_refuses_basic_when_the_camera_wants_digest(clip: Path) -> None:
    """The test camera really checks Digest: a Basic header with the right password is refused."""
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    async with HttpCamera(clip, user=USER, password=PASSWORD, auth="digest") as cam, \
            aiohttp.ClientSession() as session, \
            session.get(cam.url(credentials=False), headers={"Authorization": basic}) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Digest ")


async def test_large_stills_arrive_whole_and_decode_at_reduced_scale(camera: HttpCamera) -> None:
    jpeg = await fetch_snapshot(camera.url("/large.jpg"), timeout_s=5.0)
    assert len(jpeg) > 2_000_000
    assert _decode(jpeg).shape == (1440, 2560, 3)  # the whole body, not its first chunk
    reader = StreamReader("wide", camera.url("/large.jpg"), width=320, fps=5.0, poll_s=0.2)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 3, 10, "large stills")
    frame = reader.latest()
    assert frame is not None
    assert frame.source_size == (2560, 1440)
    assert frame.image.shape == (180, 320, 3)
    assert reader.stats.corrupt_packets == 0


async def test_fetch_snapshot_error_kinds(camera: HttpCamera) -> None:
    with pytest.raises(StreamError) as not_found:
        await fetch_snapshot(camera.url("/nope.jpg"), timeout_s=2.0)
    assert "404" in str(not_found.value)
    assert not isinstance(not_found.value, StreamAuthError | StreamConnectError)

    camera.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(StreamConnectError, match="timed out"):
        await fetch_snapshot(camera.url(), timeout_s=0.3)
    assert time.monotonic() - started < 1.1  # the 0.3 s timeout, not the camera's 1 s delay
    camera.delay_s = 0.0

    port = camera.port
    await camera.stop()
    with pytest.raises(StreamConnectError, match="cannot reach"):
        await fetch_snapshot(f"http://127.0.0.1:{port}/snapshot.jpg", timeout_s=2.0)

    await camera.start()
    with pytest.raises(StreamError, match="did not return a JPEG"):
        await probe_snapshot(camera.url("/not-a-jpeg.jpg"), timeout_s=2.0)


async def test_probe_snapshot_describes_the_still(auth_camera: HttpCamera) -> None:
    info = await probe_snapshot(auth_camera.url(), timeout_s=2.0)
    assert (info["width"], info["height"]) == (640, 360)
    assert info["codec"] == "mjpeg"
    assert info["bytes"] > 1000


# -- StreamReader polling ---------------------------------------------------------------------
async def test_reader_polls_at_the_configured_interval(auth_camera: HttpCamera) -> None:
    status = StatusLog()
    reader = StreamReader("shop", auth_camera.url(), width=160, fps=10.0, poll_s=0.25, on_status=status)
    assert reader.spec.kind == "snapshot"
    seqs: list[int] = []
    images: list[np.ndarray] = []
    async with LoopLagMonitor() as lag, running(reader):
        await wait_until(lambda: reader.online, 5, "online")
        s0, t0 = reader.stats.sampled, time.monotonic()
        polls0 = auth_camera.log.snapshots
        while time.monotonic() - t0 < 2.5:
            frame = reader.latest()
            if frame is not None and (not seqs or frame.seq != seqs[-1]):
                seqs.append(frame.seq)
                images.append(frame.image)
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - t0
        rate = (reader.stats.sampled - s0) / elapsed
        polls = auth_camera.log.snapshots - polls0
        frame = reader.latest()
    # Every 0.25 s (4/s, 10 GETs in 2.5 s), within about ±35 % on a loaded machine.
    assert 2.6 <= rate <= 5.2, f"{rate:.2f} stills/s, configured every 0.25 s"
    assert 7 <= polls <= 13, f"{polls} GETs in {elapsed:.1f} s"
    gaps = np.diff(auth_camera.log.snapshot_times[-polls:])
    assert 0.2 <= float(np.median(gaps)) <= 0.35, gaps
    assert frame is not None
    assert frame.source_size == (640, 360)
    assert frame.image.shape == (90, 160, 3)  # resized once to the reader width
    assert frame.image.dtype == np.uint8
    assert abs(time.time() - frame.captured_at) < 1.0
    # Real pictures that change over time: the clip's white square moves.
    assert (frame.image.astype(int).min(axis=2) > 200).sum() > 10
    assert len(images) >= 6
    assert any(np.abs(a.astype(int) - b.astype(int)).mean() > 1.0 for a, b in itertools.pairwise(images))
    assert status.states == [True]
    assert status.wrong_thread == 0
    assert reader.stats.reconnects == 0
    assert reader.stats.auth_failures == 0
    # Digest answers pre-emptively after the first challenge: one 401 per session, not per poll.
    assert auth_camera.log.refused == 1
    assert lag.max_lag_s < 0.25, f"event loop blocked {lag.max_lag_s:.3f} s"


async def test_reader_never_polls_faster_than_it_samples(camera: HttpCamera) -> None:
    reader = StreamReader("slow", camera.url(), width=320, fps=2.0, poll_s=0.05)
    assert reader.spec.poll_s == pytest.approx(0.5)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 1, 5, "the first still")
        await asyncio.sleep(2.0)
    assert 3 <= camera.log.snapshots <= 7  # every 0.5 s (fps 2), not every 0.05 s: 5 in 2 s + the first
    assert reader.stats.sampled == reader.stats.decoded  # every still polled was used


async def test_a_jpg_url_is_polled_without_poll_s(camera: HttpCamera) -> None:
    reader = StreamReader("jpg", camera.url(), width=320, fps=4.0)
    assert reader.spec.kind == "snapshot"
    assert reader.spec.poll_s == pytest.approx(0.25)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 3, 5, "three stills")
    frame = reader.latest()
    assert frame is not None
    assert frame.image.shape == (180, 320, 3)
    with pytest.raises(StreamError, match="http"):
        StreamReader("bad", "rtsp://127.0.0.1/cam", width=320, fps=4.0, poll_s=1.0)


async def test_reader_wrong_password_reports_one_auth_error(
    auth_camera: HttpCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status = StatusLog()
    reader = StreamReader("till", auth_camera.url(password=WRONG), width=160, fps=5.0, poll_s=0.2,
                          on_status=status, auth_retry_s=30.0)
    async with running(reader):
        await wait_until(lambda: reader.last_error is not None, 5, "the auth failure")
        await asyncio.sleep(1.0)  # no retry storm while we wait
    assert isinstance(reader.last_exception, StreamAuthError)
    assert "401" in (reader.last_error or "")
    assert reader.stats.attempts == 1
    assert reader.stats.auth_failures == 1
    assert len(auth_camera.log.paths) <= 3
    assert status.events == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "authentication failed" in errors[0].getMessage()
    everything = "\n".join([caplog.text, reader.last_error or "", repr(reader.last_exception), reader.url])
    assert WRONG not in everything
    assert PASSWORD not in everything
    assert "***" in everything


async def test_server_down_goes_offline_then_online_again(
    clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status = StatusLog()
    async with HttpCamera(clip, user=USER, password=PASSWORD, auth="digest") as cam:
        reader = StreamReader("kiosk", cam.url(), width=160, fps=5.0, poll_s=0.2, on_status=status,
                              backoff=Backoff(initial=0.2, maximum=0.5), open_timeout=1.0)
        async with running(reader):
            await wait_until(lambda: reader.online, 5, "online")
            await cam.stop()
            took = await wait_until(lambda: not reader.online, 3, "offline after the camera stopped")
            assert isinstance(reader.last_exception, StreamConnectError)
            seq_before = reader.latest().seq  # type: ignore[union-attr]
            await asyncio.sleep(1.0)
            await cam.start()  # same port
            await wait_until(lambda: reader.online, 5, "online again")
            await wait_until(lambda: reader.latest().seq > seq_before + 3,  # type: ignore[union-attr]
                             5, "stills after the restart")
    assert took < 1.4
    assert status.states == [True, False, True]
    assert status.wrong_thread == 0
    assert reader.stats.reconnects >= 1
    assert reader.stats.auth_failures == 0
    assert PASSWORD not in caplog.text


async def test_not_a_jpeg_is_an_error_not_a_frame(camera: HttpCamera) -> None:
    reader = StreamReader("html", camera.url("/not-a-jpeg.jpg"), width=160, fps=5.0, poll_s=0.2,
                          backoff=Backoff(initial=5.0, maximum=5.0))
    async with running(reader):
        await wait_until(lambda: reader.last_error is not None, 5, "the error")
    assert "did not return a JPEG" in (reader.last_error or "")
    assert reader.latest() is None
    assert not reader.online


async def test_cancel_is_prompt_even_mid_request(camera: HttpCamera) -> None:
    reader = StreamReader("door", camera.url(), width=160, fps=5.0, poll_s=0.2, open_timeout=5.0)
    task = asyncio.create_task(reader.run())
    await wait_until(lambda: reader.stats.sampled >= 2, 5, "stills")
    camera.delay_s = 3.0  # the next request hangs in the camera
    await asyncio.sleep(0.5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.7  # not the 3 s the request hangs
    assert reader._thread is not None
    assert not reader._thread.is_alive()
    await asyncio.sleep(0.05)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
                and "SnapshotClient" in repr(t.get_coro())]
    assert not leftover
