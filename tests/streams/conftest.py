"""Fixtures for stream reader tests: real clips and a real GStreamer RTSP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.media import make_test_clip
from tests.support.rtsp import RtspServer

RTSP_USER = "admin"
RTSP_PASSWORD = "Gr1d-s3cret!"  # must never show up in logs or errors


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 640×360, 25 fps, 1 s GOP H.264 (100 frames)."""
    return make_test_clip(tmp_path_factory.mktemp("clips") / "clip360.mp4", 4.0, 640, 360, 25)


@pytest.fixture(scope="module")
def rtsp_server(clip: Path) -> Iterator[RtspServer]:
    """One RTSP server (Basic auth on) shared by the tests of a module."""
    with RtspServer({"cam": clip}, user=RTSP_USER, password=RTSP_PASSWORD) as server:
        yield server
