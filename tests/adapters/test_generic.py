"""The generic cameras (adapters/generic.py) through the adapter conformance suite, against real peers.

UrlCamera: a real GStreamer RTSP server with Digest and with Basic auth. SnapshotCamera: a real
HTTP camera (aiohttp) serving JPEG stills behind Digest auth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.adapters.conformance import AdapterCase, AdapterConformance
from tests.support.http_camera import HttpCamera
from tests.support.media import make_test_clip
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.timeout(60)

USER = "operator"
PASSWORD = "Conf0rm-secret!"
WRONG = "Not-the-password"


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 320×240, 25 fps H.264."""
    return make_test_clip(tmp_path_factory.mktemp("generic") / "clip240.mp4", 2.0, 320, 240, 25)


@pytest.fixture(scope="module", params=["digest", "basic"])
def rtsp(request: pytest.FixtureRequest, small_clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam": small_clip}, user=USER, password=PASSWORD, auth=request.param) as server:
        yield server


class TestRtspUrlCamera(AdapterConformance):
    @pytest.fixture
    def adapter_case(self, rtsp: RtspServer) -> AdapterCase:
        return AdapterCase(
            config={"kind": "rtsp", "id": "gate-1", "name": "Gate", "url": rtsp.url("cam", credentials=False),
                    "username": USER, "password": PASSWORD, "transport": "tcp"},
            secrets=[PASSWORD],
            bad_auth={"password": WRONG},
            unreachable={"url": "rtsp://127.0.0.1:9/cam"},
            section="cameras",
        )


class TestSnapshotCamera(AdapterConformance):
    @pytest.fixture
    async def camera(self, small_clip: Path) -> AsyncIterator[HttpCamera]:
        async with HttpCamera(small_clip, user=USER, password=PASSWORD, auth="digest", max_frames=10) as cam:
            yield cam

    @pytest.fixture
    def adapter_case(self, camera: HttpCamera) -> AdapterCase:
        return AdapterCase(
            config={"kind": "snapshot", "id": "shop-1", "url": camera.url(credentials=False),
                    "username": USER, "password": PASSWORD, "interval_s": 0.5},
            secrets=[PASSWORD],
            bad_auth={"password": WRONG},
            unreachable={"url": "http://127.0.0.1:9/snapshot.jpg"},
            section="cameras",
        )


class TestMjpegUrlCamera(AdapterConformance):
    @pytest.fixture
    async def camera(self, small_clip: Path) -> AsyncIterator[HttpCamera]:
        async with HttpCamera(small_clip, user=USER, password=PASSWORD, auth="basic", max_frames=10) as cam:
            yield cam

    @pytest.fixture
    def adapter_case(self, camera: HttpCamera) -> AdapterCase:
        return AdapterCase(
            config={"id": "village-7", "url": camera.url("/mjpeg", credentials=False),
                    "username": USER, "password": PASSWORD},  # kind inferred: mjpeg
            secrets=[PASSWORD],
            bad_auth={"password": WRONG},
            unreachable={"url": "http://127.0.0.1:9/mjpeg"},
            section="cameras",
        )


class TestFileUrlCamera(AdapterConformance):
    @pytest.fixture
    def adapter_case(self, small_clip: Path) -> AdapterCase:
        return AdapterCase(
            config={"kind": "file", "id": "replay", "url": small_clip.as_uri(), "loop": True},
            unreachable={"url": "file:///nonexistent/clip.mp4"},
            section="cameras",
        )
