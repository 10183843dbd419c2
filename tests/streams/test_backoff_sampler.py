"""Backoff, sampler and redaction helpers (pure logic)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.backoff import Backoff
from streams.decode import Scrubber, SourceSpec, resized_size
from streams.sampler import Sampler


def test_backoff_grows_caps_and_resets_after_a_healthy_period() -> None:
    b = Backoff(initial=0.5, maximum=10.0, jitter=0.0, reset_after=30.0)
    assert [b.failure() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.failure(connected_for=5.0) == 10.0  # a short-lived connection does not reset
    assert b.failure(connected_for=31.0) == 0.5


def test_backoff_jitter_spreads_cameras_that_fail_together() -> None:
    delays = {round(Backoff(initial=1.0, jitter=0.25, rng=random.Random(seed)).failure(), 6)
              for seed in range(50)}
    assert len(delays) > 40
    assert all(0.75 <= d <= 1.25 for d in delays)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=5.0, maximum=1.0)


@given(source_fps=st.sampled_from([5.0, 10.0, 12.5, 15.0, 24.0, 25.0, 29.97, 30.0, 50.0]),
       fps=st.sampled_from([1.0, 2.0, 5.0]))
def test_sampler_keeps_the_requested_rate(source_fps: float, fps: float) -> None:
    s = Sampler(fps)
    seconds = 20
    kept = sum(s.accept(i / source_fps) for i in range(int(seconds * source_fps)))
    assert abs(kept - seconds * fps) <= 1


def test_sampler_restarts_after_timestamps_jump() -> None:
    s = Sampler(5.0)
    assert s.accept(100.0)
    assert not s.accept(100.04)
    assert s.accept(0.0)  # the camera restarted its clock
    assert s.accept(60.0)  # a long stall: take the next frame, no burst afterwards
    assert not s.accept(60.04)


def test_scrubber_removes_passwords_in_any_form() -> None:
    scrub = Scrubber("rtsp://admin:p%40ss-w0rd@10.0.0.5:554/Streaming/101")
    assert scrub.safe_url == "rtsp://admin:***@10.0.0.5:554/Streaming/101"
    text = scrub("failed: 'rtsp://admin:p%40ss-w0rd@10.0.0.5:554/x' (password p@ss-w0rd)")
    assert "w0rd" not in text
    assert "10.0.0.5" in text


def test_source_spec_kinds_and_file_paths() -> None:
    assert SourceSpec("rtsp://h/x").kind == "rtsp"
    assert SourceSpec("https://h/x.mjpg").kind == "http"
    target, fmt, options, timeout = SourceSpec("file:///tmp/my%20clip.mp4").open_args()
    assert (target, fmt, options, timeout) == ("/tmp/my clip.mp4", None, {}, None)
    _, _, rtsp_opts, _ = SourceSpec("rtsp://h/x", transport="udp").open_args()
    assert rtsp_opts["rtsp_transport"] == "udp"


def test_resized_size_keeps_aspect() -> None:
    assert resized_size(1280, 720, 640) == (640, 360)
    assert resized_size(640, 272, 320) == (320, 136)
    assert resized_size(1920, 1080, 416) == (416, 234)
