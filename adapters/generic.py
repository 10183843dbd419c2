"""Cameras that speak nothing but a URL: RTSP, HTTP MJPEG, JPEG snapshots, local files.

Configuration only — most village (小电网) and private (民间) cameras need nothing else::

    cameras:
      - id: gate                      # kind inferred from the URL: rtsp
        url: rtsp://10.0.0.5:554/Streaming/Channels/101
        sub_url: rtsp://10.0.0.5:554/Streaming/Channels/102   # detection reads this one
        username: admin
        password: ${GATE_PASSWORD}    # Basic or Digest, as the camera asks
        transport: udp
      - id: shop
        kind: snapshot                # a JPEG URL polled every interval_s
        url: http://10.0.0.9/cgi-bin/snapshot.jpg
        interval_s: 1.0
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from adapters.base import Adapter, Capability, DeviceInfo, StreamSet, StreamUri
from adapters.camera import CameraBase
from adapters.registry import register
from hub.errors import (
    AdapterAuthError,
    AdapterConnectError,
    AdapterNotReady,
    StreamAuthError,
    StreamConnectError,
    StreamError,
)
from hub.redact import redact_url

URL_KINDS = {
    "rtsp": "rtsp", "rtsps": "rtsp", "http": "mjpeg", "https": "mjpeg", "file": "file", "demo": "file",
}


def infer_camera_kind(url: object) -> str | None:
    """The generic camera kind a URL implies (``rtsp://`` → rtsp, ``http://`` → mjpeg, ...)."""
    if not isinstance(url, str) or "://" not in url:
        return None
    return URL_KINDS.get(url.split("://", 1)[0].lower())


def with_credentials(url: str, username: str | None, password: SecretStr | None) -> str:
    """Put user/password into the URL's user-info (FFmpeg answers Basic and Digest challenges)."""
    if not username and password is None:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        return url  # credentials written into the URL win
    user = quote(username or "", safe="")
    secret = quote(password.get_secret_value(), safe="") if password is not None else None
    host = parts.netloc
    netloc = f"{user}:{secret}@{host}" if secret is not None else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class CameraConfig(CameraBase):
    """A camera read from a URL. ``kind`` may be left out: it follows from the URL's scheme."""

    kind: Literal["rtsp", "mjpeg", "file"] = Field(
        ..., description="rtsp, mjpeg (HTTP multipart JPEG) or file; inferred from url when omitted."
    )
    url: str = Field(
        ...,
        description="rtsp://, rtsps://, http(s):// (MJPEG), file:// or demo://<clip> (a generated demo "
        "scene). ${ENV} placeholders allowed for credentials.",
    )
    sub_url: str | None = Field(
        None, description="A second, smaller stream of the same camera; detection reads it, the main url "
        "is kept for viewing and evidence."
    )
    username: str | None = Field(None, description="User name, when not written into the URL.")
    password: SecretStr | None = Field(None, description="Password (never logged); Basic or Digest.")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    loop: bool = Field(False, description="file:// only: play again from the start at the end.")
    realtime: bool = Field(True, description="file:// only: pace to the clip's frame rate (a live source).")

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            kind = infer_camera_kind(data.get("url"))
            if kind is not None:
                return {**data, "kind": kind}
        return data

    @field_validator("url", "sub_url")
    @classmethod
    def _scheme(cls, url: str | None) -> str | None:
        if url is not None and infer_camera_kind(url) is None:
            raise ValueError(
                "unsupported URL scheme; use one of rtsp://, rtsps://, http(s)://, file://, demo://"
            )
        return url

    def stream(self, url: str) -> StreamUri:
        return StreamUri(with_credentials(url, self.username, self.password), transport=self.transport,
                         loop=self.loop, realtime=self.realtime)


class SnapshotCameraConfig(CameraBase):
    """A camera that only serves still JPEGs over HTTP (many cheap village cameras)."""

    kind: Literal["snapshot"] = Field(..., description="snapshot")
    url: str = Field(..., pattern=r"^https?://", description="http(s):// URL returning one JPEG per GET.")
    interval_s: float = Field(1.0, ge=0.05, le=3600, description="Seconds between polls.")
    username: str | None = Field(None, description="User name (Basic or Digest auth).")
    password: SecretStr | None = Field(None, description="Password (never logged).")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Per-request timeout.")


def _map_stream_error(exc: StreamError, where: str) -> Exception:
    if isinstance(exc, StreamAuthError):
        return AdapterAuthError(f"{where}: {exc}")
    if isinstance(exc, StreamConnectError):
        return AdapterConnectError(f"{where}: {exc}")
    return AdapterNotReady(f"{where}: {exc}")


def probe_url(stream: StreamUri, timeout_s: float = 5.0) -> dict[str, Any]:
    """Open a stream once (blocking: call in a thread) and describe its video."""
    import threading

    from streams.decode import DecodeSession, Scrubber, SourceSpec

    spec = SourceSpec(url=stream.url, transport=stream.transport, open_timeout=timeout_s,
                      read_timeout=timeout_s, realtime=False)
    session = DecodeSession(spec, Scrubber(stream.url), threading.Event())
    t0 = time.monotonic()
    session.open()
    try:
        width, height = session.source_size
        codec = session.codec_name
    finally:
        session.close()
    open_ms = round((time.monotonic() - t0) * 1000)
    return {"width": width, "height": height, "codec": codec, "open_ms": open_ms}


@register
class UrlCamera(Adapter[CameraConfig]):
    """RTSP, HTTP MJPEG or a local file, from configuration alone."""

    config_model = CameraConfig
    capabilities = frozenset({Capability.STREAMS})
    description = "Generic camera from a URL: RTSP (TCP/UDP, Basic/Digest), HTTP MJPEG, file"

    async def probe(self) -> DeviceInfo:
        url = self.config.url
        if url.startswith("demo://"):
            return DeviceInfo(self.id, self.config.kind, self.capabilities, model="demo clip",
                              extra={"clip": url.removeprefix("demo://")})
        from streams.decode import SourceSpec  # streams (PyAV, OpenCV) load only when a camera is used
        from streams.snapshot import probe_snapshot

        main = self.config.stream(url)
        try:
            if SourceSpec(url=main.url).kind == "snapshot":  # http(s)://.../*.jpg: polled, not streamed
                info = await probe_snapshot(main.url)
            else:
                info = await asyncio.to_thread(probe_url, main)
        except StreamError as exc:
            raise _map_stream_error(exc, self.id) from None
        return DeviceInfo(self.id, self.config.kind, self.capabilities, model=info["codec"],
                          extra={"url": redact_url(main.url), **info})

    async def streams(self) -> StreamSet:
        c = self.config
        return StreamSet(main=c.stream(c.url), sub=c.stream(c.sub_url) if c.sub_url else None)


@register
class SnapshotCamera(Adapter[SnapshotCameraConfig]):
    """A JPEG snapshot URL polled at ``interval_s``."""

    config_model = SnapshotCameraConfig
    capabilities = frozenset({Capability.STREAMS, Capability.SNAPSHOT})
    description = "Camera that only serves JPEG snapshots over HTTP, polled (Basic/Digest auth)"

    def _url(self) -> str:
        return with_credentials(self.config.url, self.config.username, self.config.password)

    async def probe(self) -> DeviceInfo:
        from streams.snapshot import probe_snapshot

        try:
            info = await probe_snapshot(self._url(), timeout_s=self.config.timeout_s)
        except StreamError as exc:
            raise _map_stream_error(exc, self.id) from None
        return DeviceInfo(self.id, "snapshot", self.capabilities, model="jpeg",
                          extra={"url": redact_url(self.config.url), **info})

    async def streams(self) -> StreamSet:
        url = self._url()
        return StreamSet(main=StreamUri(url, poll_s=self.config.interval_s, timeout_s=self.config.timeout_s),
                         snapshot=url)
