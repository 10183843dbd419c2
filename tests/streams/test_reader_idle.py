"""Key-frame-only ("idle") decoding and frame listeners, against a real GStreamer RTSP server.

The test clip (tests/support/media.py) is 25 fps with a 1 s GOP and shows one white 72×72
square on a gradient that has no white in it, so a correctly decoded frame, resized to 320
wide, has exactly one solid ~36×36 white box. A P-frame decoded against missing references
(switching back to full decoding mid-GOP) smears the square across the frame; the first test
shows the check catches exactly that.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from streams.decode import to_bgr
from streams.frame import Frame
from streams.reader import StreamReader
from tests.streams.helpers import running, wait_until
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.timeout(60)


def intact(image: npt.NDArray[np.uint8]) -> bool:
    """One solid white square of ~36 px (the clip's only white), as a clean decode gives."""
    ys, xs = np.nonzero(image.min(axis=2) > 200)
    if len(xs) == 0:
        return False
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    return bool(32 <= w <= 40 and 32 <= h <= 40 and len(xs) / (w * h) > 0.9)


def test_integrity_check_catches_a_mid_gop_switch(clip: Path) -> None:
    """Negative control: resuming full decoding mid-GOP corrupts frames, and ``intact`` sees it."""
    clean, naive = [], []
    for switch_mid_gop, out in ((False, clean), (True, naive)):
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            cc = stream.codec_context
            for i, packet in enumerate(container.demux(stream)):
                if switch_mid_gop:
                    cc.skip_frame = "NONKEY" if i % 25 < 10 else "DEFAULT"
                out.extend(intact(to_bgr(f, 320)) for f in cc.decode(packet))
    assert len(clean) == 100
    assert all(clean)
    assert naive.count(False) >= 20  # most frames after each mid-GOP switch are smeared


class Collector:
    """Frame listener: grabs every sampled frame (runs on the decode thread)."""

    def __init__(self, reader: StreamReader) -> None:
        self.reader = reader
        self.frames: list[tuple[float, Frame, bool]] = []  # (monotonic, frame, decoder idle)
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        frame = self.reader.latest()
        assert frame is not None
        with self._lock:
            self.threads.add(threading.get_ident())
            self.frames.append((time.monotonic(), frame, self.reader.decoding_keyframes_only))

    def since(self, t: float) -> list[tuple[float, Frame, bool]]:
        with self._lock:
            return [x for x in self.frames if x[0] >= t]


async def test_idle_decodes_key_frames_only_and_resumes_cleanly_at_a_key_frame(
    rtsp_server: RtspServer,
) -> None:
    reader = StreamReader("idle", rtsp_server.url("cam"), width=320, fps=5.0)
    frames = Collector(reader)
    remove = reader.add_frame_listener(frames)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 3, 10, "first frames")
        assert not reader.idle

        reader.set_idle(True)
        assert reader.idle
        await wait_until(lambda: reader.decoding_keyframes_only, 2, "key-frame-only decoding")
        await asyncio.sleep(0.5)
        s = reader.stats
        d0, n0, i0, sm0, dr0 = s.decoded, s.not_decoded, s.idle_skipped, s.sampled, s.dropped
        t0 = time.monotonic()
        await asyncio.sleep(4.0)
        elapsed = time.monotonic() - t0
        decoded_fps = (s.decoded - d0) / elapsed
        skipped_fps = (s.not_decoded - n0) / elapsed
        sampled = s.sampled - sm0
        planned = s.idle_skipped - i0
        assert 0.5 <= decoded_fps <= 1.6, f"idle decoded {decoded_fps:.2f} fps, wanted ~1 (one per GOP)"
        assert 20 <= decoded_fps + skipped_fps <= 30  # the whole stream is still consumed
        assert 2 <= sampled <= 6  # key frames keep arriving as sampled frames
        assert 14 <= planned <= 22  # ~4 of the 5 sample ticks per second fell on skipped frames
        assert s.dropped == dr0  # the listener took every frame: planned skips are not drops
        idle_frames = [f for _, f, idle in frames.since(t0) if idle]
        assert len(idle_frames) >= 2
        assert all(intact(f.image) for f in idle_frames)

        t_resume = time.monotonic()
        reader.set_idle(False)
        waited = await wait_until(lambda: not reader.decoding_keyframes_only, 3, "full decoding")
        assert waited <= 1.5  # at the next key frame (1 s GOP)
        await asyncio.sleep(0.3)
        d1, t1 = s.decoded, time.monotonic()
        await asyncio.sleep(2.0)
        full_fps = (s.decoded - d1) / (time.monotonic() - t1)
        assert 20 <= full_fps <= 30, f"decoded {full_fps:.2f} fps after resuming"
        after = [f for _, f, idle in frames.since(t_resume) if not idle]
    remove()
    assert len(after) >= 10
    bad = [f.seq for f in after if not intact(f.image)]
    assert bad == [], f"corrupt frames after resuming: {bad}"
    assert reader.stats.corrupt_packets == 0
    assert threading.get_ident() not in frames.threads  # listeners run on the decode thread


async def test_listener_is_called_once_per_sampled_frame_and_can_be_removed(
    rtsp_server: RtspServer,
) -> None:
    reader = StreamReader("notify", rtsp_server.url("cam"), width=160, fps=5.0)
    calls = 0

    def count() -> None:
        nonlocal calls
        calls += 1

    remove = reader.add_frame_listener(count)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 5, 10, "sampled frames")
        assert abs(calls - reader.stats.sampled) <= 1
        remove()
        frozen = calls
        await wait_until(lambda: reader.stats.sampled >= frozen + 3, 10, "more frames")
    assert calls == frozen
