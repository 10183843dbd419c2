"""A far-edge HTTP camera for tests: JPEG snapshots and MJPEG from a real clip, Basic or Digest auth.

``HttpCamera(clip)`` decodes the clip once into JPEG stills and serves, on 127.0.0.1:

* ``GET /snapshot.jpg`` — the still of "now" (the clip plays at its own frame rate, looping),
  with an ``X-Frame-Index`` header;
* ``GET /mjpeg`` — ``multipart/x-mixed-replace`` at ``mjpeg_fps``;
* ``GET /large.jpg`` — a 2560×1440 still of noise (several MB: bodies arrive in many chunks);
* ``GET /not-a-jpeg.jpg`` — 200 with an HTML body; anything else — 404.

With ``user``/``password`` every path requires HTTP Basic (``auth="basic"``) or Digest
(``auth="digest"``, RFC 7616, ``qop=auth``, ``algorithm`` MD5 or SHA-256; Basic is then refused)
checked for real. Every request's scheme and ``Authorization`` header are recorded so tests can
tell which scheme a client used and that no password travelled in clear. ``stop()``/``start()``
keep the port, so a client's URL stays valid across a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote

import av
import cv2
import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler

REALM = "http-camera"
_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def load_stills(clip: Path, *, max_frames: int = 100, quality: int = 80) -> tuple[list[bytes], float]:
    """The clip's first ``max_frames`` frames as JPEG bytes, and its frame rate (blocking)."""
    stills: list[bytes] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            ok, jpg = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            stills.append(jpg.tobytes())
            if len(stills) >= max_frames:
                break
    if not stills:
        raise ValueError(f"no frames in {clip}")
    return stills, fps


@dataclass
class RequestLog:
    """What the camera saw: one entry per request."""

    paths: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic, per request
    schemes: list[str] = field(default_factory=list)  # "none", "basic", "digest" (as sent)
    authorization: list[str] = field(default_factory=list)  # raw headers, for leak checks
    refused: int = 0  # 401/403 answers
    snapshots: int = 0  # stills served
    snapshot_times: list[float] = field(default_factory=list)


class HttpCamera:
    """See the module docstring. Use ``async with HttpCamera(clip, ...) as cam:``."""

    def __init__(
        self,
        clip: Path,
        *,
        user: str | None = None,
        password: str | None = None,
        auth: Literal["basic", "digest"] = "basic",
        algorithm: Literal["MD5", "SHA-256"] = "MD5",
        mjpeg_fps: float = 10.0,
        max_frames: int = 100,
        port: int = 0,
    ) -> None:
        self.clip = clip
        self.user = user
        self.password = password
        self.auth = auth
        self.algorithm = algorithm
        self.mjpeg_fps = mjpeg_fps
        self.max_frames = max_frames
        self.port = port
        self.host = "127.0.0.1"
        self.delay_s = 0.0  # hold every snapshot answer this long (to test client timeouts)
        self.log = RequestLog()
        self._stills: list[bytes] = []
        self._fps = 25.0
        self._t0 = time.monotonic()
        self._nonces: set[str] = set()
        self._opaque = secrets.token_hex(8)
        self._runner: web.AppRunner | None = None
        self._large_still: bytes | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> HttpCamera:
        if not self._stills:
            self._stills, self._fps = await asyncio.to_thread(load_stills, self.clip,
                                                              max_frames=self.max_frames)
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/snapshot.jpg", self._snapshot)
        app.router.add_get("/mjpeg", self._mjpeg)
        app.router.add_get("/not-a-jpeg.jpg", self._not_a_jpeg)
        app.router.add_get("/large.jpg", self._large)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._t0 = time.monotonic()
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def __aenter__(self) -> HttpCamera:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def url(self, path: str = "/snapshot.jpg", user: str | None = None, password: str | None = None,
            *, credentials: bool = True) -> str:
        """``http://[user:password@]127.0.0.1:port/path``.

        The camera's own user/password fill in whatever is not given (``credentials=False``: none).
        """
        if credentials:
            user = self.user if user is None else user
            password = self.password if password is None else password
        auth = ""
        if user is not None:
            auth = quote(user, safe="")
            if password is not None:
                auth += ":" + quote(password, safe="")
            auth += "@"
        return f"http://{auth}{self.host}:{self.port}{path}"

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the stills."""
        image = cv2.imdecode(np.frombuffer(self._stills[0], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        return int(image.shape[1]), int(image.shape[0])

    def _now_index(self) -> int:
        return int((time.monotonic() - self._t0) * self._fps) % len(self._stills)

    # -- authentication --------------------------------------------------------------------
    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        self.log.paths.append(request.path)
        self.log.times.append(time.monotonic())
        self.log.schemes.append(header.split(" ", 1)[0].lower() if header else "none")
        if header:
            self.log.authorization.append(header)
        if self.user is None:
            return await handler(request)
        scheme, _, value = header.partition(" ")
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
            if scheme.lower() == "basic" and hmac.compare_digest(value.strip(), expected):
                return await handler(request)
            return self._refuse(f'Basic realm="{REALM}"')
        if scheme.lower() == "digest":
            ok, stale = self._check_digest(request, value)
            if ok:
                return await handler(request)
            return self._refuse(self._digest_challenge(stale))
        return self._refuse(self._digest_challenge(False))

    def _refuse(self, challenge: str) -> web.Response:
        self.log.refused += 1
        return web.Response(status=401, text="401 Unauthorized", headers={"WWW-Authenticate": challenge})

    def _digest_challenge(self, stale: bool) -> str:
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        text = (f'Digest realm="{REALM}", qop="auth", algorithm={self.algorithm}, nonce="{nonce}", '
                f'opaque="{self._opaque}"')
        return text + (", stale=true" if stale else "")

    def _check_digest(self, request: web.Request, value: str) -> tuple[bool, bool]:
        """(valid, stale nonce) of a Digest ``Authorization`` value (RFC 7616)."""
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _PARAM.finditer(value)}
        nonce = params.get("nonce", "")
        if params.get("username") != self.user or params.get("realm") != REALM:
            return False, False
        if params.get("uri") != request.raw_path:
            return False, False
        if params.get("algorithm", "MD5").upper() != self.algorithm:
            return False, False
        if nonce not in self._nonces:
            return False, True

        def h(text: str) -> str:
            return _HASHES[self.algorithm](text.encode()).hexdigest()

        ha1 = h(f"{self.user}:{REALM}:{self.password or ''}")
        ha2 = h(f"{request.method}:{params['uri']}")
        qop = params.get("qop")
        if qop == "auth":
            expected = h(f"{ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}:auth:{ha2}")
        elif qop is None:
            expected = h(f"{ha1}:{nonce}:{ha2}")
        else:
            return False, False
        return hmac.compare_digest(expected, params.get("response", "")), False

    # -- handlers --------------------------------------------------------------------------
    async def _snapshot(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        index = self._now_index()
        self.log.snapshots += 1
        self.log.snapshot_times.append(time.monotonic())
        return web.Response(body=self._stills[index], content_type="image/jpeg",
                            headers={"X-Frame-Index": str(index), "Cache-Control": "no-store"})

    async def _large(self, request: web.Request) -> web.Response:
        if self._large_still is None:
            noise = np.random.default_rng(7).integers(0, 256, (1440, 2560, 3), dtype=np.uint8)
            ok, jpg = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            self._large_still = jpg.tobytes()
        return web.Response(body=self._large_still, content_type="image/jpeg")

    async def _not_a_jpeg(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>login page</body></html>", content_type="text/html")

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frameboundary"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                data = self._stills[self._now_index()]
                await resp.write(b"--frameboundary\r\nContent-Type: image/jpeg\r\n"
                                 b"Content-Length: %d\r\n\r\n%s\r\n" % (len(data), data))
                await asyncio.sleep(1.0 / self.mjpeg_fps)
        return resp
