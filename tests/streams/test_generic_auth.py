"""Generic cameras from configuration alone, end to end against real peers.

RTSP with Basic and Digest auth (GStreamer's server), RTSP over UDP, HTTP MJPEG with Basic and
Digest (FFmpeg's HTTP client against a real aiohttp camera), JPEG snapshot cameras and local files,
through the adapter classes of ``adapters/generic.py`` and the StreamReader they feed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from adapters.base import StreamUri
from adapters.generic import CameraConfig, SnapshotCamera, SnapshotCameraConfig, UrlCamera
from hub.errors import AdapterAuthError, AdapterConnectError, StreamAuthError
from streams.reader import StreamReader
from tests.streams.helpers import StatusLog, running, wait_until
from tests.support.http_camera import HttpCamera
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.timeout(60)

USER = "admin"
PASSWORD = "Dig3st:p@ss w/rd"  # ':' '@' '/' and a space: quoting must hold, logs must never show it
WRONG = "Wr0ng-generic-pw"


@pytest.fixture(scope="module")
def rtsp_basic(clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam": clip}, user=USER, password=PASSWORD, auth="basic") as server:
        yield server


@pytest.fixture(scope="module")
def rtsp_digest(clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam": clip}, user=USER, password=PASSWORD, auth="digest") as server:
        yield server


@pytest.fixture(params=["basic", "digest"])
def rtsp(request: pytest.FixtureRequest) -> RtspServer:
    server = request.getfixturevalue(f"rtsp_{request.param}")
    assert isinstance(server, RtspServer)
    return server


def url_camera(url: str, password: str = PASSWORD, **extra: Any) -> UrlCamera:
    """A camera configured the way a user writes it: the URL without credentials, then the login."""
    return UrlCamera(CameraConfig(id="gate", url=url, username=USER, password=SecretStr(password),
                                  **extra))


def reader_for(stream: StreamUri | None, **kw: Any) -> StreamReader:
    """A StreamReader for an adapter's stream, built the way the hub builds it."""
    assert stream is not None
    return StreamReader("gate", stream.url, width=kw.pop("width", 320), fps=kw.pop("fps", 5.0),
                        transport=stream.transport, loop=stream.loop, realtime=stream.realtime,
                        poll_s=stream.poll_s, **kw)


async def rtsp_answer(server: RtspServer, authorization: str | None = None) -> str:
    """The status line and headers of a raw RTSP DESCRIBE (optionally with an Authorization header)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        request = f"DESCRIBE rtsp://{server.host}:{server.port}/cam RTSP/1.0\r\nCSeq: 1\r\n"
        if authorization:
            request += f"Authorization: {authorization}\r\n"
        writer.write((request + "\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return head.decode(errors="replace")
    finally:
        writer.close()
        await writer.wait_closed()


def _real_picture(image: np.ndarray) -> None:
    """The test clip: a red/green gradient with a white square."""
    img = image.astype(int)
    assert img[:, :, 2].max() > 200
    assert img[:, :, 1].max() > 150
    assert (img.min(axis=2) > 220).sum() > 50


# -- RTSP ----------------------------------------------------------------------------------------
async def test_the_digest_server_asks_for_digest_and_refuses_basic(rtsp_digest: RtspServer) -> None:
    first = await rtsp_answer(rtsp_digest)
    assert first.startswith("RTSP/1.0 401")
    assert "WWW-Authenticate: Digest " in first
    assert "Basic" not in first
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert (await rtsp_answer(rtsp_digest, basic)).startswith("RTSP/1.0 401")


async def test_rtsp_right_password_streams_frames(rtsp: RtspServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    camera = url_camera(rtsp.url("cam", credentials=False))
    status = StatusLog()
    reader = reader_for((await camera.streams()).detection, on_status=status)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 5, 10, "five frames")
    frame = reader.latest()
    assert frame is not None
    assert frame.source_size == (640, 360)
    assert frame.image.shape == (180, 320, 3)
    _real_picture(frame.image)
    assert status.states[0] is True
    assert reader.stats.auth_failures == 0
    assert PASSWORD not in caplog.text
    assert "***" in reader.url


async def test_rtsp_wrong_password_is_reported_once_without_retry_storm(
    rtsp: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    camera = url_camera(rtsp.url("cam", credentials=False), password=WRONG)
    status = StatusLog()
    reader = reader_for((await camera.streams()).detection, on_status=status, auth_retry_s=30.0)
    before = rtsp.connections
    async with running(reader):
        await wait_until(lambda: reader.last_error is not None, 10, "the auth failure")
        await asyncio.sleep(1.5)
    assert isinstance(reader.last_exception, StreamAuthError)
    assert "401" in (reader.last_error or "")
    assert reader.stats.attempts == 1
    assert rtsp.connections - before == 1, "one RTSP connection, then quiet for auth_retry_s"
    assert status.events == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "authentication failed" in errors[0].getMessage()
    text = "\n".join([caplog.text, reader.last_error or "", repr(reader.last_exception), reader.url])
    assert WRONG not in text
    assert PASSWORD not in text


async def test_rtsp_over_udp_decodes_frames(rtsp_digest: RtspServer) -> None:
    camera = url_camera(rtsp_digest.url("cam", credentials=False), transport="udp")
    stream = (await camera.streams()).detection
    assert stream is not None and stream.transport == "udp"
    reader = reader_for(stream, fps=10.0)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 5, 10, "frames over UDP")
        d0 = reader.stats.decoded
        await asyncio.sleep(1.0)
        decoded = reader.stats.decoded - d0
    frame = reader.latest()
    assert frame is not None
    _real_picture(frame.image)
    assert 18 <= decoded <= 32, f"{decoded} frames decoded in 1 s of a 25 fps stream"
    assert reader.stats.corrupt_packets <= 2


async def test_url_camera_probe_with_basic_and_digest(
    rtsp: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    info = await url_camera(rtsp.url("cam", credentials=False)).probe()
    assert info.kind == "rtsp"
    assert (info.extra["width"], info.extra["height"]) == (640, 360)
    assert info.extra["codec"] == "h264"
    assert info.model == "h264"
    assert PASSWORD not in str(info.to_json())

    with pytest.raises(AdapterAuthError) as err:
        await url_camera(rtsp.url("cam", credentials=False), password=WRONG).probe()
    assert "401" in str(err.value)
    with pytest.raises(AdapterConnectError):
        await url_camera("rtsp://127.0.0.1:9/cam").probe()
    text = caplog.text + str(err.value) + repr(err.value)
    assert WRONG not in text
    assert PASSWORD not in text


# -- HTTP MJPEG (FFmpeg's HTTP client) --------------------------------------------------------------
@pytest.fixture(params=["basic", "digest"])
async def mjpeg_camera(request: pytest.FixtureRequest, clip: Path) -> AsyncIterator[HttpCamera]:
    async with HttpCamera(clip, user=USER, password=PASSWORD, auth=request.param, mjpeg_fps=10.0) as cam:
        yield cam


async def test_http_mjpeg_with_auth(mjpeg_camera: HttpCamera, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    camera = url_camera(mjpeg_camera.url("/mjpeg", credentials=False))
    assert camera.config.kind == "mjpeg"  # inferred from http://
    info = await camera.probe()
    assert (info.extra["width"], info.extra["height"]) == (640, 360)
    reader = reader_for((await camera.streams()).detection)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 5, 10, "MJPEG frames")
    frame = reader.latest()
    assert frame is not None
    assert frame.source_size == (640, 360)
    _real_picture(frame.image)
    assert mjpeg_camera.auth in mjpeg_camera.log.schemes  # the scheme the camera asked for was used
    if mjpeg_camera.auth == "digest":
        assert "basic" not in mjpeg_camera.log.schemes
        assert PASSWORD not in "\n".join(mjpeg_camera.log.authorization)

    wrong = url_camera(mjpeg_camera.url("/mjpeg", credentials=False), password=WRONG)
    with pytest.raises(AdapterAuthError):
        await wrong.probe()
    bad_reader = reader_for((await wrong.streams()).detection, auth_retry_s=30.0)
    async with running(bad_reader):
        await wait_until(lambda: bad_reader.last_error is not None, 10, "the auth failure")
    assert isinstance(bad_reader.last_exception, StreamAuthError)
    assert bad_reader.stats.attempts == 1
    assert PASSWORD not in caplog.text
    assert WRONG not in caplog.text


# -- JPEG snapshots --------------------------------------------------------------------------------
@pytest.fixture
async def snapshot_camera(clip: Path) -> AsyncIterator[HttpCamera]:
    async with HttpCamera(clip, user=USER, password=PASSWORD, auth="digest", algorithm="SHA-256") as cam:
        yield cam


async def test_snapshot_camera_probe_streams_and_polling(
    snapshot_camera: HttpCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = SnapshotCameraConfig(kind="snapshot", id="shop", url=snapshot_camera.url(credentials=False),
                                  username=USER, password=SecretStr(PASSWORD), interval_s=0.5)
    camera = SnapshotCamera(config)
    info = await camera.probe()
    assert info.kind == "snapshot"
    assert (info.extra["width"], info.extra["height"]) == (640, 360)
    streams = await camera.streams()
    assert streams.main is not None and streams.main.poll_s == 0.5
    assert streams.snapshot == streams.main.url
    assert PASSWORD not in str(streams.to_json())

    reader = reader_for(streams.detection, width=160, fps=5.0)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 3, 5, "three stills")
    frame = reader.latest()
    assert frame is not None
    assert frame.image.shape == (90, 160, 3)
    gaps = np.diff(snapshot_camera.log.snapshot_times[1:])  # [0] was the probe
    # Every 0.5 s: a loaded machine delays single polls, so the median, and never much faster.
    assert len(gaps) >= 2 and 0.4 <= float(np.median(gaps)) <= 0.7 and gaps.min() >= 0.3, gaps

    with pytest.raises(AdapterAuthError):
        await SnapshotCamera(config.model_copy(update={"password": SecretStr(WRONG)})).probe()
    with pytest.raises(AdapterConnectError):
        await SnapshotCamera(config.model_copy(update={"url": "http://127.0.0.1:9/snap.jpg"})).probe()
    assert PASSWORD not in caplog.text
    assert WRONG not in caplog.text


async def test_a_jpg_url_camera_is_polled(snapshot_camera: HttpCamera) -> None:
    """``url: http://.../snapshot.jpg`` with no kind: probed and read as a snapshot camera."""
    camera = url_camera(snapshot_camera.url(credentials=False))
    info = await camera.probe()
    assert (info.extra["width"], info.extra["height"]) == (640, 360)
    reader = reader_for((await camera.streams()).detection, fps=4.0)
    assert reader.spec.kind == "snapshot"
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 2, 5, "stills")


# -- local files -------------------------------------------------------------------------------------
async def test_file_url_through_the_generic_adapter(clip: Path) -> None:
    camera = UrlCamera(CameraConfig.model_validate({"id": "replay", "url": clip.as_uri(), "loop": True}))
    assert camera.config.kind == "file"
    info = await camera.probe()
    assert (info.extra["width"], info.extra["height"]) == (640, 360)
    assert info.extra["codec"] == "h264"
    stream = (await camera.streams()).detection
    assert stream is not None and stream.loop and stream.realtime
    reader = reader_for(stream, width=256, fps=5.0)
    async with running(reader):
        await wait_until(lambda: reader.stats.sampled >= 3, 5, "frames from the file")
    frame = reader.latest()
    assert frame is not None
    assert frame.image.shape == (144, 256, 3)
    _real_picture(frame.image)
    with pytest.raises(Exception, match="no such file"):
        await UrlCamera(CameraConfig.model_validate({"id": "gone", "url": "file:///nonexistent.mp4"})).probe()
