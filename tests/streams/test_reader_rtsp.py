"""StreamReader against a real GStreamer RTSP server (scripts/rtsp_server.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import av.logging
import numpy as np
import pytest

from hub.errors import StreamAuthError
from streams.backoff import Backoff
from streams.reader import StreamReader
from tests.streams.conftest import RTSP_PASSWORD, RTSP_USER
from tests.streams.helpers import StatusLog, running, wait_until
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_frames_arrive_at_requested_fps_resized_once(
    rtsp_server: RtspServer, transport: str
) -> None:
    status = StatusLog()
    reader = StreamReader("gate", rtsp_server.url("cam"), width=320, fps=5.0,
                          transport=transport, on_status=status)  # type: ignore[arg-type]
    async with running(reader):
        await wait_until(lambda: reader.latest() is not None, 10, "the first frame")
        assert reader.online
        await asyncio.sleep(0.5)  # past the start-up burst of the probe buffer
        s0, d0, t0 = reader.stats.sampled, reader.stats.decoded, time.monotonic()
        await asyncio.sleep(3.0)
        s1, d1, t1 = reader.stats.sampled, reader.stats.decoded, time.monotonic()
        frame = reader.latest()

    sampled_fps = (s1 - s0) / (t1 - t0)
    decoded_fps = (d1 - d0) / (t1 - t0)
    assert 4.0 <= sampled_fps <= 6.0, f"sampled {sampled_fps:.2f} fps, wanted 5"
    assert 20.0 <= decoded_fps <= 30.0, f"decoded {decoded_fps:.2f} fps from a 25 fps stream"
    assert frame is not None
    assert frame.camera_id == "gate"
    assert frame.image.shape == (180, 320, 3)
    assert frame.image.dtype == np.uint8
    assert frame.source_size == (640, 360)
    assert frame.size == (320, 180)
    assert abs(time.time() - frame.captured_at) < 2.0
    # The clip is a red/green gradient with a white square: real pixels, not a blank frame.
    img = frame.image.astype(int)
    assert img[:, :, 2].max() > 200
    assert img[:, :, 1].max() > 150
    assert (img.min(axis=2) > 220).sum() > 200  # the white square
    assert status.states == [True]
    assert status.wrong_thread == 0
    assert reader.stats.reconnects == 0


async def test_dropped_counts_only_frames_nobody_took(rtsp_server: RtspServer) -> None:
    reader = StreamReader("yard", rtsp_server.url("cam"), width=160, fps=5.0)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 4, 10, "sampled frames")
        assert reader.stats.dropped >= 2  # nobody called latest() so far
        dropped = reader.stats.dropped
        seqs = set()
        start = time.monotonic()
        while time.monotonic() - start < 2.0:  # a consumer faster than 5 fps
            frame = reader.latest()
            assert frame is not None
            seqs.add(frame.seq)
            await asyncio.sleep(0.02)
        assert reader.stats.dropped <= dropped + 1
        assert len(seqs) >= 8


async def test_server_restart_reports_offline_then_online_and_frames_resume(clip: Path) -> None:
    status = StatusLog()
    with RtspServer({"cam": clip}) as server:
        reader = StreamReader("door", server.url("cam"), width=320, fps=5.0, on_status=status,
                              backoff=Backoff(initial=0.2, maximum=1.0))
        async with running(reader):
            await wait_until(lambda: reader.online, 10, "online")
            server.stop()
            await wait_until(lambda: not reader.online, 5, "offline after the server stopped")
            assert reader.last_error is not None
            seq_before = reader.latest().seq  # type: ignore[union-attr]
            await asyncio.sleep(1.0)
            server.start()  # same port: the reader's URL stays valid
            await wait_until(lambda: reader.online, 10, "online again after the restart")
            await wait_until(lambda: reader.latest().seq > seq_before + 3,  # type: ignore[union-attr]
                             5, "frames after the restart")
    assert status.states == [True, False, True]
    assert status.wrong_thread == 0
    assert reader.stats.reconnects >= 1


async def test_wrong_password_is_an_auth_error_reported_once_without_the_password(
    rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pa55word"
    url = rtsp_server.url("cam", RTSP_USER, wrong)
    status = StatusLog()
    reader = StreamReader("lobby", url, width=320, fps=5.0, on_status=status, auth_retry_s=2.0)
    av.logging.set_level(av.logging.VERBOSE)  # let FFmpeg talk: its lines must be redacted too
    connections_before = rtsp_server.connections
    try:
        async with running(reader):
            await wait_until(lambda: reader.last_error is not None, 10, "the auth failure")
            await asyncio.sleep(4.5)
    finally:
        av.logging.set_level(None)
    attempts = rtsp_server.connections - connections_before

    assert isinstance(reader.last_exception, StreamAuthError)
    assert "authentication failed" in (reader.last_error or "")
    assert "401" in (reader.last_error or "")
    # One attempt at once, then one every 2 s: 3 in ~5 s, never a retry storm.
    assert 2 <= reader.stats.attempts <= 4, reader.stats
    assert 2 <= attempts <= 4, f"{attempts} RTSP connections in ~5 s"
    assert reader.stats.auth_failures == reader.stats.attempts
    assert not reader.online
    assert status.events == []  # never online, so never a transition
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "authentication failed" in errors[0].getMessage()
    everything = "\n".join([caplog.text, reader.last_error or "", str(reader.last_exception),
                            repr(reader.last_exception), reader.url])
    assert wrong not in everything
    assert RTSP_PASSWORD not in everything
    assert "lobby" in caplog.text
    assert "***" in caplog.text


async def test_cancel_stops_a_thread_blocked_in_a_network_read(clip: Path) -> None:
    with RtspServer({"cam": clip}) as server:
        reader = StreamReader("hall", server.url("cam"), width=160, fps=5.0, read_timeout=1.0)
        task = asyncio.create_task(reader.run())
        await wait_until(lambda: reader.online, 10, "online")
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)  # the server freezes: the reader blocks in a read
        try:
            await asyncio.sleep(0.3)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            thread = reader._thread
            assert thread is not None
            await asyncio.to_thread(thread.join, 2.0)
            took = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
    assert not thread.is_alive()
    assert took < 1.6, f"decode thread took {took:.2f} s to stop"


async def test_cancel_while_streaming_is_prompt(rtsp_server: RtspServer) -> None:
    reader = StreamReader("gate2", rtsp_server.url("cam"), width=160, fps=5.0)
    task = asyncio.create_task(reader.run())
    await wait_until(lambda: reader.stats.sampled >= 2, 10, "frames")
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    assert reader._thread is not None
    assert not reader._thread.is_alive()
