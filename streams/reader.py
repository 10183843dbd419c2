"""One reader per camera: decode in a worker thread, sample, resize once, reconnect forever.

``await StreamReader(...).run()`` reads until cancelled. Decoding (PyAV) runs in a dedicated
thread; only sampled frames (``fps`` per second of media time) are converted to BGR and resized
to ``width``. The newest sampled frame waits in a one-frame slot for :meth:`StreamReader.latest`;
a sampled frame overwritten before anyone took it counts as ``dropped``. Consumers that want to
wake on arrival instead of polling register :meth:`StreamReader.add_frame_listener`.

Idle cameras: :meth:`StreamReader.set_idle` switches the decoder to key frames only (about one
frame per GOP, a fraction of the decode CPU); the key frames are still delivered as sampled
frames so a motion gate keeps watching the scene. The sample ticks that fell on frames skipped
this way are counted as ``idle_skipped`` (planned), never as ``dropped``. ``set_idle(False)``
resumes full decoding at the next key frame (sooner when nothing was skipped since the last one).
Decode threads run at a lower CPU priority (``decode_nice``) so that, when the box is short of
CPU, decoding yields to inference and the event loop instead of starving them.

JPEG snapshot cameras (``poll_s=...``, or an ``http(s)://`` URL whose path ends in ``.jpg``/``.jpeg``)
are polled instead of streamed (:class:`streams.snapshot.SnapshotSession`): one GET every
``max(poll_s, 1/fps)`` seconds on the event loop (aiohttp, Basic or Digest auth), decoded in the
worker thread with ``cv2.imdecode`` (at 1/2..1/8 scale when the target width allows), delivered
like any other frame — same slot, listeners, online/offline, backoff and auth handling.

Failures reconnect with jittered exponential backoff (:class:`streams.backoff.Backoff`). An
authentication failure (RTSP/HTTP 401) is logged once and then retried only every
``auth_retry_s`` seconds. Online/offline transitions are reported through ``on_status`` on the
event loop thread. URLs are redacted everywhere (logs, ``last_error``, exceptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from hub.errors import StreamAuthError, StreamError
from streams.backoff import Backoff
from streams.decode import DecodeSession, Scrubber, SourceSpec, to_bgr
from streams.frame import Frame
from streams.sampler import Sampler
from streams.snapshot import SnapshotSession

log = logging.getLogger(__name__)

StatusCallback = Callable[[str, bool, str], None]
FrameListener = Callable[[], None]


@dataclass
class StreamStats:
    """Counters of one reader (written by its worker thread, read anywhere)."""

    decoded: int = 0  # frames out of the decoder
    sampled: int = 0  # frames kept at the detect rate (converted + resized)
    dropped: int = 0  # sampled frames overwritten in the slot before anyone took them
    reconnects: int = 0  # sessions started after the first one
    attempts: int = 0  # connection attempts (opens), including failed ones
    auth_failures: int = 0
    corrupt_packets: int = 0  # packets the decoder rejected (e.g. UDP loss)
    not_decoded: int = 0  # packets skipped on purpose in key-frame-only (idle) mode
    idle_skipped: int = 0  # sample ticks that fell on those skipped frames (planned, not drops)


class StreamReader:
    """Reads one camera URL (``rtsp(s)://``, ``http(s)://`` MJPEG or JPEG snapshot, ``file://``) forever.

    ``width``/``fps``: sampled frames are resized to this width (aspect kept, height even) at
    this rate of media time. ``transport``: RTSP over ``tcp`` or ``udp``. ``loop``/``realtime``:
    ``file://`` only (play again at the end / pace to the clip's frame rate).
    ``on_status(camera_id, online, reason)`` runs on the event loop at each online/offline
    transition. ``backoff``: reconnect delays (default 0.5 s doubling to 30 s, ±25 % jitter,
    reset after 30 s healthy). ``auth_retry_s``: wait after a 401. ``open_timeout``: connect +
    RTSP handshake; ``read_timeout``: longest silence before the stream counts as broken —
    it also bounds how long a cancelled reader's thread may stay blocked in a read (raise it
    for cameras slower than ~2 fps). ``decode_threads``: slice threads per decoder (1: one-slice
    streams, the usual camera encoding, gain nothing from more). ``skip_loop_filter``: skip
    H.264 deblocking (~25 % less decode CPU). ``decode_nice``: how much lower than the process
    the decode thread's CPU priority is (Linux; 0 = same). ``stop_timeout``: how long a
    cancelled :meth:`run` waits for the thread before returning anyway. ``poll_s``: the URL is a
    JPEG snapshot polled every ``max(poll_s, 1/fps)`` seconds (URLs ending in ``.jpg``/``.jpeg``
    are polled every ``1/fps`` without it); each request may take up to ``open_timeout``.
    """

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        width: int,
        fps: float,
        transport: Literal["tcp", "udp"] = "tcp",
        loop: bool = False,
        realtime: bool = True,
        on_status: StatusCallback | None = None,
        backoff: Backoff | None = None,
        auth_retry_s: float = 300.0,
        open_timeout: float = 5.0,
        read_timeout: float = 1.0,
        decode_threads: int = 1,
        skip_loop_filter: bool = False,
        stop_timeout: float = 2.0,
        decode_nice: int = 10,
        poll_s: float | None = None,
    ) -> None:
        if width < 2 or fps <= 0:
            raise ValueError("width must be >= 2 and fps > 0")
        if poll_s is not None and poll_s <= 0:
            raise ValueError("poll_s must be > 0")
        self.camera_id = camera_id
        self.width = width
        self.fps = fps
        self.on_status = on_status
        self.auth_retry_s = auth_retry_s
        self.stop_timeout = stop_timeout
        self.decode_nice = decode_nice
        self.spec = SourceSpec(url=url, transport=transport, loop=loop, realtime=realtime,
                               open_timeout=open_timeout, read_timeout=read_timeout,
                               decode_threads=decode_threads, skip_loop_filter=skip_loop_filter,
                               poll_s=poll_s)
        if self.spec.kind == "snapshot":  # also validates the scheme now, not in the thread
            # Never poll faster than frames are sampled: the stills in between would be dropped.
            self.spec = replace(self.spec, poll_s=max(poll_s or 0.0, 1.0 / fps))
        self.backoff = backoff or Backoff()
        self.stats = StreamStats()
        self._scrub = Scrubber(url)
        self._lock = threading.Lock()
        self._slot: Frame | None = None
        self._slot_taken = True
        self._seq = 0
        self._online = False
        self._last_error: str | None = None
        self._last_exception: StreamError | None = None
        self._online_at: float | None = None  # worker thread: when the current session went online
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()  # requested: decode key frames only
        self._session: DecodeSession | SnapshotSession | None = None
        self._listeners: list[FrameListener] = []

    # -- public state ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The camera URL with any password replaced by ``***``."""
        return self._scrub.safe_url

    @property
    def online(self) -> bool:
        """True between the first decoded frame of a session and its failure (loop-thread view)."""
        return self._online

    @property
    def last_error(self) -> str | None:
        """The most recent failure, redacted (``None`` until something failed)."""
        return self._last_error

    @property
    def last_exception(self) -> StreamError | None:
        """The most recent failure as a (redacted) StreamError, e.g. :class:`StreamAuthError`."""
        return self._last_exception

    def latest(self) -> Frame | None:
        """The newest sampled frame (the same one again until a newer one arrives)."""
        with self._lock:
            self._slot_taken = True
            return self._slot

    def add_frame_listener(self, callback: FrameListener) -> Callable[[], None]:
        """Call ``callback()`` after each new sampled frame lands in the slot; returns a remover.

        It runs on the decode thread: keep it tiny and thread-safe (e.g.
        ``loop.call_soon_threadsafe(event.set)``); exceptions are logged and ignored.
        """
        self._listeners = [*self._listeners, callback]

        def remove() -> None:
            self._listeners = [cb for cb in self._listeners if cb is not callback]

        return remove

    @property
    def idle(self) -> bool:
        """True while key-frame-only decoding is requested (see :meth:`set_idle`)."""
        return self._idle.is_set()

    @property
    def decoding_keyframes_only(self) -> bool:
        """The decoder's actual mode (lags :attr:`idle` until the next key frame on resume)."""
        session = self._session
        return session is not None and session.decoding_keyframes_only

    def set_idle(self, idle: bool) -> None:
        """Decode key frames only (``True``) or every frame again (``False``, from a key frame).

        Thread-safe; takes effect at the next packet (resuming: at the next key frame).
        """
        if idle == self._idle.is_set():
            return
        if idle:
            self._idle.set()
        else:
            self._idle.clear()
        log.debug("%s: %s", self.camera_id, "idle: key frames only" if idle else "active: every frame")

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Read until cancelled. Cancelling stops the worker thread (within ~read_timeout)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"reader {self.camera_id} is already running")
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        self._stop.clear()
        thread = threading.Thread(target=self._worker, args=(loop, finished),
                                  name=f"stream-{self.camera_id}", daemon=True)
        self._thread = thread
        thread.start()
        try:
            await asyncio.shield(finished)
        finally:
            self._stop.set()
            if not finished.done():
                await asyncio.wait({finished}, timeout=self.stop_timeout)
            # The future resolves as the thread's last act; give it a moment to be gone for real.
            for _ in range(100):
                if not thread.is_alive():
                    break
                await asyncio.sleep(0.005)
            if thread.is_alive():
                log.warning("%s: decode thread still blocked after %.1f s; it exits when "
                            "its network call times out", self.camera_id, self.stop_timeout)

    def _worker(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        self._lower_priority()
        try:
            self._read_forever(loop)
        except BaseException:
            log.error("%s: stream reader crashed:\n%s", self.camera_id, self._scrub(traceback.format_exc()))
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, finished)

    def _read_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        auth_reported = False
        first = True
        while not self._stop.is_set():
            if not first:
                self.stats.reconnects += 1
            first = False
            self.stats.attempts += 1
            started = time.monotonic()
            self._online_at = None
            session = self._new_session(loop)
            self._session = session
            error: StreamError | None = None
            try:
                session.open()
                self._read_session(session, loop)
            except StreamError as exc:
                error = exc
            except Exception as exc:  # a bug or an unexpected PyAV error: keep the camera alive
                error = StreamError(self._scrub(f"unexpected {type(exc).__name__}: {exc}"))
            finally:
                self.stats.corrupt_packets += session.corrupt_packets
                self._session = None
                session.close()
            went_online_at = self._online_at
            if self._stop.is_set():
                return
            if error is None:  # a non-looping file ended: done, like a camera going away
                error = StreamError(f"end of file ({self._scrub.safe_url})")
                self._fail(loop, error)
                log.info("%s: %s", self.camera_id, error)
                return
            healthy_for = time.monotonic() - went_online_at if went_online_at is not None else 0.0
            self._fail(loop, error)
            if isinstance(error, StreamAuthError):
                self.stats.auth_failures += 1
                delay = self.auth_retry_s
                if not auth_reported:
                    log.error("%s: %s; check the camera credentials (next try in %.0f s)",
                              self.camera_id, error, delay)
                    auth_reported = True
                else:
                    log.debug("%s: still %s", self.camera_id, error)
            else:
                auth_reported = False
                delay = self.backoff.failure(connected_for=healthy_for)
                level = logging.WARNING if went_online_at is not None or self.stats.attempts == 1 \
                    else logging.DEBUG
                log.log(level, "%s: %s; reconnecting in %.1f s (after %.1f s)", self.camera_id,
                        error, delay, time.monotonic() - started)
            self._stop.wait(delay)

    def _new_session(self, loop: asyncio.AbstractEventLoop) -> DecodeSession | SnapshotSession:
        if self.spec.kind == "snapshot":
            return SnapshotSession(self.spec, self._scrub, self._stop, loop, self.camera_id,
                                   target_width=self.width)
        return DecodeSession(self.spec, self._scrub, self._stop, self.camera_id, self._idle)

    def _read_session(self, session: DecodeSession | SnapshotSession,
                      loop: asyncio.AbstractEventLoop) -> None:
        """Decode one session until it ends; sets ``_online_at`` at its first frame."""
        sampler = Sampler(self.fps)
        stats = self.stats
        for av_frame, media_t in session.frames():
            if av_frame is None:  # not decoded on purpose (idle): a planned skip, not a drop
                stats.not_decoded += 1
                if sampler.accept(media_t):
                    stats.idle_skipped += 1
                continue
            stats.decoded += 1
            if self._online_at is None:
                self._online_at = time.monotonic()
                self._post_status(loop, True, f"streaming {av_frame.width}x{av_frame.height}")
            # Key frames decoded in idle mode are always delivered (about one per GOP); the
            # sampler still sees them so its ticks stay in step.
            if not sampler.accept(media_t) and not session.decoding_keyframes_only:
                continue
            captured_at = time.time()  # the frame has left the decoder
            image = to_bgr(av_frame, self.width)
            with self._lock:
                self._seq += 1
                frame = Frame(self.camera_id, self._seq, captured_at, image,
                              (int(av_frame.width), int(av_frame.height)))
                if not self._slot_taken:
                    stats.dropped += 1
                self._slot = frame
                self._slot_taken = False
            stats.sampled += 1
            for listener in self._listeners:
                try:
                    listener()
                except Exception:
                    log.exception("%s: frame listener failed", self.camera_id)

    def _lower_priority(self) -> None:
        """Nice this decode thread (FFmpeg threads it starts later inherit it). Linux only."""
        if self.decode_nice <= 0:
            return
        try:
            tid = threading.get_native_id()
            nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.decode_nice)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (AttributeError, OSError) as exc:  # not Linux, or not allowed: run at normal priority
            log.debug("%s: cannot lower the decode thread's priority: %s", self.camera_id, exc)

    # -- status ----------------------------------------------------------------------------
    def _fail(self, loop: asyncio.AbstractEventLoop, error: StreamError) -> None:
        self._last_error = str(error)
        self._last_exception = error
        self._post_status(loop, False, str(error))

    def _post_status(self, loop: asyncio.AbstractEventLoop, online: bool, reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody to tell
            loop.call_soon_threadsafe(self._set_online, online, reason)

    def _set_online(self, online: bool, reason: str) -> None:
        if online == self._online:
            return
        self._online = online
        if online:
            log.info("%s: online (%s) %s", self.camera_id, self.url, reason)
        if self.on_status is not None:
            try:
                self.on_status(self.camera_id, online, reason)
            except Exception:
                log.exception("%s: on_status callback failed", self.camera_id)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
