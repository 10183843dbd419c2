"""JPEG snapshot cameras: fetch one still over HTTP, or poll one as a camera's video source.

Many cheap village cameras serve nothing but ``GET /snapshot.jpg``. :class:`SnapshotClient` fetches
such stills with aiohttp on the event loop; credentials come from the URL's user-info
(``http://user:pass@host/...``), are answered as the camera asks — HTTP Basic or Digest (RFC 7616:
MD5, SHA-256, ``qop=auth``, through aiohttp's ``DigestAuthMiddleware``) — and never appear in a log
line, an error or a request URL. :func:`fetch_snapshot` is the one-shot form.

:class:`SnapshotSession` is the frame source a :class:`~streams.reader.StreamReader` uses for
snapshot URLs: it runs in the reader's worker thread like a :class:`~streams.decode.DecodeSession`,
hands each HTTP request to the event loop (nothing blocks the loop: aiohttp is asynchronous, JPEG
decoding stays in the thread) and yields one :class:`~streams.decode.StillFrame` per poll.

Errors: :class:`StreamAuthError` on 401/403, :class:`StreamConnectError` when the camera cannot
be reached or does not answer in time, :class:`StreamError` for anything else (404, 5xx, not a JPEG).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

import aiohttp
import cv2
import numpy as np
import numpy.typing as npt
from yarl import URL

from hub.errors import StreamAuthError, StreamConnectError, StreamError
from hub.redact import redact_url
from streams.decode import Scrubber, SourceSpec, StillFrame

log = logging.getLogger(__name__)

MAX_JPEG_BYTES = 32 * 1024 * 1024  # a 16 MP still is ~8 MB; anything bigger is not a snapshot
MAX_BAD_IMAGES = 5  # consecutive undecodable responses that end a polling session
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}
T = TypeVar("T")


class SnapshotClient:
    """Fetches JPEG stills from one URL over a kept-alive aiohttp session (an async context manager).

    The first 401 tells which scheme the camera wants; later requests answer it up front (Digest
    pre-emptively with the last challenge, renewing it when the camera marks the nonce stale).
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.safe_url = redact_url(url)
        parsed = URL(url)
        self._url = parsed.with_user(None)  # never send (or show) credentials in the request line
        self._user = parsed.user or ""
        self._password = parsed.password
        self._has_credentials = parsed.user is not None or parsed.password is not None
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._scheme: Literal["unknown", "basic"] = "unknown"  # "unknown": answer a Digest challenge
        self._digest: aiohttp.DigestAuthMiddleware | None = None
        if self._has_credentials and ":" not in self._user:
            self._digest = aiohttp.DigestAuthMiddleware(self._user, self._password or "")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def fetch(self) -> bytes:
        """GET the still once; returns the body. Raises StreamAuthError/StreamConnectError/StreamError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Accept": "image/jpeg, image/*;q=0.8"},
            )
        try:
            return await self._fetch(self._session)
        except StreamError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise StreamConnectError(f"no answer from {self.safe_url} within {self.timeout_s:g} s "
                                     "(timed out)") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            reason = self._scrub(str(exc)) or type(exc).__name__
            raise StreamConnectError(f"cannot reach {self.safe_url}: {reason}") from None
        except aiohttp.ClientError as exc:  # e.g. a malformed Digest challenge, a broken body
            raise StreamError(f"{type(exc).__name__}: {self._scrub(str(exc))} ({self.safe_url})") from None

    async def _fetch(self, session: aiohttp.ClientSession) -> bytes:
        status, challenges, body = await self._get(session)
        if status == 401 and self._scheme == "unknown" and self._has_credentials \
                and any(c.lower().startswith("basic") for c in challenges):
            self._scheme = "basic"
            status, challenges, body = await self._get(session)
        if status in (401, 403):
            if not self._has_credentials:
                why = "the camera wants credentials and the URL has none"
            elif self._digest is None:
                why = "a user name may not contain ':'"
            else:
                why = "credentials refused"
            raise StreamAuthError(f"authentication failed ({status} "
                                  f"{'Unauthorized' if status == 401 else 'Forbidden'}: {why}) "
                                  f"for {self.safe_url}")
        if status == 404:
            raise StreamError(f"snapshot not found (404) at {self.safe_url}")
        if status >= 300:
            raise StreamError(f"HTTP {status} from {self.safe_url}")
        if body is None or not body:
            raise StreamError(f"empty or oversized snapshot from {self.safe_url}")
        return body

    async def _get(self, session: aiohttp.ClientSession) -> tuple[int, list[str], bytes | None]:
        """One GET with the credentials the camera is known (or guessed) to want."""
        headers: dict[str, str] = {}
        middlewares: tuple[aiohttp.DigestAuthMiddleware, ...] = ()
        if self._scheme == "basic":
            token = base64.b64encode(f"{self._user}:{self._password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        elif self._digest is not None:
            middlewares = (self._digest,)
        async with session.get(self._url, headers=headers, middlewares=middlewares) as resp:
            challenges = resp.headers.getall("WWW-Authenticate", [])
            if not 200 <= resp.status < 300 or (resp.content_length or 0) > MAX_JPEG_BYTES:
                return resp.status, challenges, None
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > MAX_JPEG_BYTES:
                    return resp.status, challenges, None
                chunks.append(chunk)
            return resp.status, challenges, b"".join(chunks)

    def _scrub(self, text: str) -> str:
        if self._password and len(self._password) >= 4:
            text = text.replace(self._password, "***")
        return text


async def fetch_snapshot(url: str, *, timeout_s: float = 5.0) -> bytes:
    """Fetch one JPEG from ``url`` (credentials in its user-info; Basic or Digest as the camera asks)."""
    async with SnapshotClient(url, timeout_s=timeout_s) as client:
        return await client.fetch()


async def probe_snapshot(url: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Fetch and decode one still; describe it (``width``, ``height``, ``bytes``, ``codec``, ``open_ms``)."""
    t0 = time.monotonic()
    jpeg = await fetch_snapshot(url, timeout_s=timeout_s)
    image = await asyncio.to_thread(cv2.imdecode, np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise StreamError(f"{redact_url(url)} did not return a JPEG image ({len(jpeg)} bytes)")
    return {"width": int(image.shape[1]), "height": int(image.shape[0]), "codec": "mjpeg",
            "bytes": len(jpeg), "open_ms": round((time.monotonic() - t0) * 1000)}


class _Stopped(Exception):
    """The reader was stopped while waiting for the event loop."""


class SnapshotSession:
    """Polls a JPEG URL every ``spec.poll_s`` seconds; the frame source of a snapshot reader.

    Same interface as :class:`~streams.decode.DecodeSession`: :meth:`open` (the first fetch: auth
    and reachability errors surface here), :meth:`frames`, :meth:`close`. Runs in the reader's
    worker thread; ``loop`` is the event loop the HTTP requests run on. A failed poll ends the
    session (the reader reconnects with backoff); a response that is not an image is counted in
    ``corrupt_packets`` and skipped, :data:`MAX_BAD_IMAGES` in a row end the session.
    """

    decoding_keyframes_only = False  # every JPEG is a key frame: idle mode changes nothing

    def __init__(self, spec: SourceSpec, scrub: Scrubber, stop: threading.Event,
                 loop: asyncio.AbstractEventLoop, camera_id: str = "", *, target_width: int = 0) -> None:
        if spec.poll_s is None or spec.poll_s <= 0:
            raise ValueError("a snapshot source needs poll_s > 0")
        self.spec = spec
        self.scrub = scrub
        self.stop = stop
        self.loop = loop
        self.camera_id = camera_id
        self.poll_s = spec.poll_s
        self.target_width = target_width
        self.corrupt_packets = 0
        self.fetched = 0
        self._client: SnapshotClient | None = None
        self._first: tuple[StillFrame, float] | None = None
        self._size: tuple[int, int] | None = None  # (w, h) of the camera's stills
        self._reduce = 1  # JPEG DCT scaling factor for the next decode (1, 2, 4 or 8)

    @property
    def source_size(self) -> tuple[int, int]:
        if self._size is None:
            raise StreamError("no snapshot decoded yet")
        return self._size

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Fetch and decode the first still. Raises StreamError (StreamAuthError on 401/403)."""
        self._client = SnapshotClient(self.spec.url, timeout_s=self.spec.open_timeout)
        t = time.monotonic()
        try:
            data = self._fetch()
        except _Stopped:
            raise StreamError("stopped while connecting") from None
        frame = self._decode(data)
        if frame is None:
            raise StreamError(f"{self.scrub.safe_url} did not return a JPEG image")
        self._first = (frame, t)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            self._run(client.close(), stoppable=False, wait_s=2.0)
        except (_Stopped, TimeoutError):
            log.debug("%s: could not close the HTTP session cleanly", self.camera_id)

    # -- frames ----------------------------------------------------------------------------
    def frames(self) -> Iterator[tuple[StillFrame, float]]:
        """Yield ``(still, media_time_s)`` once per poll until stopped; raises StreamError on failure.

        Media time is the poll's scheduled tick (monotonic), so a reader sampling at ``1/poll_s``
        keeps every still. A poll that took longer than the interval is followed at once by the next.
        """
        if self._first is None:
            raise StreamError("SnapshotSession.frames() before open()")
        frame, tick = self._first
        self._first = None
        yield frame, tick
        bad = 0
        while not self.stop.is_set():
            tick += self.poll_s
            now = time.monotonic()
            if tick < now:
                tick = now  # late (a slow camera): skip the missed ticks instead of bursting
            elif self.stop.wait(tick - now):
                return
            try:
                data = self._fetch()
            except _Stopped:
                return
            still = self._decode(data)
            if still is None:
                self.corrupt_packets += 1
                bad += 1
                if bad >= MAX_BAD_IMAGES:
                    raise StreamError(f"{bad} responses in a row from {self.scrub.safe_url} were not images")
                continue
            bad = 0
            yield still, tick

    # -- internals -------------------------------------------------------------------------
    def _fetch(self) -> bytes:
        assert self._client is not None
        try:
            data = self._run(self._client.fetch(), wait_s=self.spec.open_timeout + 2.0)
        except TimeoutError:
            raise StreamConnectError(f"no answer from {self.scrub.safe_url} (timed out)") from None
        self.fetched += 1
        return data

    def _run(self, coro: Coroutine[Any, Any, T], *, stoppable: bool = True, wait_s: float) -> T:
        """Run ``coro`` on the event loop and wait for it here (checking ``stop`` every 20 ms)."""
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: nobody left to read for
            coro.close()
            raise _Stopped from None
        deadline = time.monotonic() + wait_s
        while not future.done():
            concurrent.futures.wait([future], timeout=0.02)
            if stoppable and self.stop.is_set() and not future.done():
                future.cancel()
                raise _Stopped
            if time.monotonic() > deadline and not future.done():
                future.cancel()
                raise TimeoutError
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise _Stopped from None

    def _decode(self, data: bytes) -> StillFrame | None:
        """Decode a JPEG, at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) when the target is that small."""
        buf = np.frombuffer(data, np.uint8)
        reduce = self._reduce
        image = cv2.imdecode(buf, _REDUCED[reduce])
        if image is None:
            return None
        h, w = image.shape[:2]
        size = self._size
        if reduce == 1:
            size = (int(w), int(h))
        elif size is None or (math.ceil(size[0] / reduce), math.ceil(size[1] / reduce)) != (w, h):
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # the camera changed resolution: learn it again
            if image is None:
                return None
            size = (int(image.shape[1]), int(image.shape[0]))
        self._size = size
        target = self.target_width
        self._reduce = next((r for r in (8, 4, 2) if target and size[0] >= r * target), 1)
        return StillFrame(cast("npt.NDArray[np.uint8]", image), size[0], size[1])
