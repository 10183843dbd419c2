"""Blocking decode sessions with PyAV. Everything here runs in a reader's worker thread.

A :class:`DecodeSession` opens one container (RTSP, HTTP MJPEG or a file) and yields decoded
video frames with their *media time* in seconds. It paces and loops ``file://`` sources, and
turns every PyAV/FFmpeg failure into a redacted :class:`~hub.errors.StreamError`. JPEG snapshot
URLs (:attr:`SourceSpec.poll_s`, or an ``http(s)://`` path ending in ``.jpg``/``.jpeg``) are
polled by :class:`streams.snapshot.SnapshotSession` instead, which yields :class:`StillFrame` s.

Key-frame-only ("idle") decoding: while the session's ``keyframes_only`` event is set, packets
that are not key frames are not decoded at all (``skip_frame = NONKEY`` on the codec as well),
which costs about a fifth of full decoding for a 1 s GOP. Clearing the event resumes full
decoding at the next key frame — or at once when no packet was skipped since the last key
frame — because a P-frame decoded after skipped references would come out corrupt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

import av
import av.error
import av.logging
import cv2
import numpy as np
import numpy.typing as npt

from hub.errors import StreamAuthError, StreamConnectError, StreamError
from hub.redact import redact_text, redact_url

log = logging.getLogger(__name__)
ffmpeg_log = logging.getLogger("streams.ffmpeg")

SourceKind = Literal["rtsp", "http", "file", "snapshot"]
SNAPSHOT_SUFFIXES = (".jpg", ".jpeg")
_MAX_KEYLESS_S = 10.0  # key-frame-only mode gives up on a stream that flags no key frame this long


class Scrubber:
    """Removes the URL's password from any text (PyAV errors embed the URL, FFmpeg logs too)."""

    def __init__(self, url: str) -> None:
        self.safe_url = redact_url(url)
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        self._secrets = sorted({s for s in (password, unquote(password or "")) if s and len(s) >= 4},
                               key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = redact_text(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where and how to read one camera."""

    url: str
    transport: Literal["tcp", "udp"] = "tcp"
    loop: bool = False
    realtime: bool = True
    open_timeout: float = 5.0
    read_timeout: float = 1.0
    decode_threads: int = 1  # slice threads; x264-style one-slice streams gain nothing from more
    skip_loop_filter: bool = False  # ~25% less H.264 decode CPU, slightly blockier frames
    poll_s: float | None = None  # a JPEG snapshot URL polled this often (http(s) only)

    @property
    def kind(self) -> SourceKind:
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if self.poll_s is not None and scheme not in ("http", "https"):
            raise StreamError(f"snapshot polling needs an http(s):// URL, not {redact_url(self.url)}")
        if scheme in ("rtsp", "rtsps"):
            return "rtsp"
        if scheme in ("http", "https"):
            if self.poll_s is not None or parts.path.lower().endswith(SNAPSHOT_SUFFIXES):
                return "snapshot"
            return "http"
        if scheme == "file":
            return "file"
        raise StreamError(f"unsupported stream URL scheme {scheme!r} in {redact_url(self.url)}")

    def open_args(self) -> tuple[str, str | None, dict[str, str], tuple[float, float] | None]:
        """(target, format, options, timeout) for :func:`av.open`."""
        io_timeout = str(int(self.read_timeout * 1_000_000))
        kind = self.kind
        if kind == "file":
            parts = urlsplit(self.url)
            # file:///abs/path, file://localhost/abs/path, or file://rel/path (relative to cwd)
            host = "" if parts.netloc in ("", "localhost") else parts.netloc
            return unquote(host + parts.path), None, {}, None
        # nobuffer drops what probing read, so probe briefly: the SDP already carries SPS/PPS.
        common = {"fflags": "nobuffer", "analyzeduration": "100000", "probesize": "65536"}
        if kind == "rtsp":
            opts = {**common, "rtsp_transport": self.transport, "timeout": io_timeout,
                    "allowed_media_types": "video", "max_delay": "500000"}
            if self.transport == "udp":
                opts["buffer_size"] = str(4 * 1024 * 1024)  # 720p key frames burst
                opts["reorder_queue_size"] = "64"
            return self.url, None, opts, (self.open_timeout, self.read_timeout)
        if kind == "snapshot":
            raise StreamError("JPEG snapshot URLs are polled (streams.snapshot), not opened by FFmpeg")
        # HTTP MJPEG (multipart/x-mixed-replace): FFmpeg's mpjpeg demuxer, boundary from headers.
        opts = {**common, "timeout": io_timeout}
        return self.url, "mpjpeg", opts, (self.open_timeout, self.read_timeout)


def classify(exc: BaseException, scrub: Scrubber, spec: SourceSpec) -> StreamError:
    """Turn a PyAV/OS error into a redacted StreamError (never chain the original: it holds the URL)."""
    if isinstance(exc, StreamError):
        return exc
    text = scrub(str(exc))
    where = scrub.safe_url
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError) \
            or " 401 " in text or "authorization failed" in text:
        return StreamAuthError(f"authentication failed (401 Unauthorized) for {where}")
    if isinstance(exc, av.error.ExitError):
        return StreamConnectError(f"no data from {where} for {spec.read_timeout:g} s (timed out)")
    if isinstance(exc, av.error.HTTPNotFoundError):
        return StreamError(f"stream not found (404) at {where}")
    if isinstance(exc, OSError | av.error.FFmpegError | EOFError):
        reason = getattr(exc, "strerror", None) or text
        return StreamConnectError(f"{scrub(str(reason))} ({where})")
    return StreamError(f"{type(exc).__name__}: {text} ({where})")


def resized_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) with ``w == target_width`` and the source aspect ratio kept (h rounded to even)."""
    h = max(2, round(height * target_width / width / 2) * 2)
    return target_width, h


@dataclass(frozen=True, slots=True)
class StillFrame:
    """A decoded JPEG still: BGR ``image`` (maybe at 1/2..1/8 scale) of a ``width``×``height`` picture."""

    image: npt.NDArray[np.uint8]
    width: int
    height: int


def to_bgr(frame: av.VideoFrame | StillFrame, width: int) -> npt.NDArray[np.uint8]:
    """One swscale pass: colour conversion and resize to ``width`` (aspect kept).

    A :class:`StillFrame` is already BGR: it is only resized (area interpolation), if needed.
    """
    w, h = resized_size(frame.width, frame.height, width)
    if isinstance(frame, StillFrame):
        if frame.image.shape[1] == w and frame.image.shape[0] == h:
            return frame.image
        return cast("npt.NDArray[np.uint8]", cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_AREA))
    image = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
    return cast("npt.NDArray[np.uint8]", image)


class DecodeSession:
    """One open container. Iterate :meth:`frames` until it ends or fails; then :meth:`close`."""

    def __init__(self, spec: SourceSpec, scrub: Scrubber, stop: threading.Event,
                 camera_id: str = "", keyframes_only: threading.Event | None = None) -> None:
        self.spec = spec
        self.scrub = scrub
        self.stop = stop
        self.camera_id = camera_id
        self.keyframes_only = keyframes_only or threading.Event()
        self.corrupt_packets = 0
        self.skipped_packets = 0  # non-key packets not decoded in key-frame-only mode
        self.decoding_keyframes_only = False  # the decoder's actual mode (lags the event)
        # media-time state of frames() (files: offset of the current loop, pacing anchor)
        self._use_pts = False
        self._frame_interval = 0.04
        self._loop_offset = 0.0
        self._first_t: float | None = None
        self._last_t = 0.0
        self._index = 0
        self._anchor: float | None = None
        self._container: Any = None
        self._ffmpeg_logs: av.logging.Capture | None = None
        self._captured: list[tuple[int, str, str]] = []

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Connect/open. Raises StreamError (StreamAuthError on 401)."""
        target, fmt, options, timeout = self.spec.open_args()
        # Keep FFmpeg's own log lines from this thread out of other loggers; we re-emit them
        # redacted (only if the application enabled PyAV logging at all).
        self._ffmpeg_logs = av.logging.Capture(local=True)
        self._captured = self._ffmpeg_logs.__enter__()
        try:
            if self.spec.kind == "file" and not Path(target).is_file():
                raise StreamError(f"no such file: {target}")
            self._container = av.open(target, format=fmt, options=options, timeout=timeout)
            if not self._container.streams.video:
                raise StreamError(f"no video stream in {self.scrub.safe_url}")
        except Exception as exc:
            self.close()
            raise classify(exc, self.scrub, self.spec) from None
        finally:
            self.forward_ffmpeg_logs()

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception as exc:  # closing a broken RTSP session may fail; nothing to do
                log.debug("%s: close failed: %s", self.camera_id, self.scrub(str(exc)))
        self.forward_ffmpeg_logs()
        if self._ffmpeg_logs is not None:
            self._ffmpeg_logs.__exit__(None, None, None)
            self._ffmpeg_logs = None

    def forward_ffmpeg_logs(self) -> None:
        """Re-emit FFmpeg's lines from this thread, redacted, at DEBUG.

        The reader reports failures itself (once); FFmpeg's own lines are diagnostics.
        """
        while self._captured:
            level, name, message = self._captured.pop(0)
            ffmpeg_log.debug("%s: [%s] %s: %s", self.camera_id, name,
                             logging.getLevelName(av.logging.adapt_level(level)),
                             self.scrub(message.strip()))

    @property
    def codec_name(self) -> str:
        return str(self._container.streams.video[0].codec_context.name)

    @property
    def source_size(self) -> tuple[int, int]:
        cc = self._container.streams.video[0].codec_context
        return int(cc.width), int(cc.height)

    # -- frames ----------------------------------------------------------------------------
    def frames(self) -> Iterator[tuple[av.VideoFrame | None, float]]:
        """Yield ``(frame, media_time_s)``; returns when stopped or (non-looping) at the end.

        In key-frame-only mode each packet that was not decoded yields ``(None, media_time_s)``
        (so the caller can account planned skips); :attr:`decoding_keyframes_only` tells
        whether a yielded frame was decoded in that mode. Live sources end with
        StreamConnectError when the server closes the stream. Raises StreamError on failures.
        """
        container = self._container
        stream = container.streams.video[0]
        cc = stream.codec_context
        if self.spec.decode_threads > 1:
            # Slice threads add no latency; frame threads would add one frame per thread and
            # cost ~15% more CPU, which many cameras on few cores cannot afford.
            cc.thread_type = "SLICE"
            cc.thread_count = self.spec.decode_threads
        else:
            cc.thread_count = 1  # FFmpeg's default would start one thread per core
        if self.spec.skip_loop_filter:
            cc.options = {**cc.options, "skip_loop_filter": "all"}
        is_file = self.spec.kind == "file"
        self._use_pts = self.spec.kind == "rtsp"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        self._frame_interval = 1.0 / rate if rate > 0 else 0.04
        self._loop_offset = 0.0
        self._first_t = None
        self._last_t = 0.0
        self._index = 0
        self._anchor = None  # wall-clock (monotonic) time of media time 0, files only
        skipped_since_key = False  # a packet after the last key frame was not decoded
        skipped_run = 0  # packets skipped since the last key frame
        max_run = int(_MAX_KEYLESS_S * rate) if rate > 0 else 250
        idle_usable = True  # False once this stream showed it flags no key frames
        keyframes_only = self.keyframes_only
        self.decoding_keyframes_only = False
        try:
            while not self.stop.is_set():
                for packet in container.demux(stream):
                    if self.stop.is_set():
                        return
                    key = bool(packet.is_keyframe)
                    if key:
                        skipped_since_key = False
                        skipped_run = 0
                    if keyframes_only.is_set() and idle_usable:
                        if not self.decoding_keyframes_only:
                            cc.skip_frame = "NONKEY"
                            self.decoding_keyframes_only = True
                    elif self.decoding_keyframes_only and (key or not skipped_since_key):
                        cc.skip_frame = "DEFAULT"  # references intact from here on
                        self.decoding_keyframes_only = False
                    if self.decoding_keyframes_only and not key and packet.size and skipped_run >= max_run:
                        log.warning("%s: no key frame in %.0f s of key-frame-only decoding; decoding "
                                    "every frame of this session", self.camera_id, _MAX_KEYLESS_S)
                        idle_usable = False
                        cc.skip_frame = "DEFAULT"
                        self.decoding_keyframes_only = False
                    if self.decoding_keyframes_only and not key and packet.size:
                        skipped_since_key = True
                        skipped_run += 1
                        self.skipped_packets += 1
                        pt = packet.pts * packet.time_base if packet.pts is not None \
                            and packet.time_base is not None else None
                        yield None, self._media_time(None if pt is None else float(pt))
                        continue
                    try:
                        decoded = cc.decode(packet)
                    except av.error.InvalidDataError:
                        self.corrupt_packets += 1  # e.g. UDP loss: skip, the next key frame heals
                        continue
                    for frame in decoded:
                        yield frame, self._media_time(frame.time)
                    if self._captured:
                        self.forward_ffmpeg_logs()
                if self.stop.is_set():
                    return
                if not is_file:
                    raise StreamConnectError(f"stream ended ({self.scrub.safe_url})")
                if not self.spec.loop:
                    return
                self._loop_offset += self._last_t + self._frame_interval
                self._last_t = 0.0
                container.seek(0)
                cc.flush_buffers()
                skipped_since_key = False
        except StreamError:
            raise
        except Exception as exc:
            raise classify(exc, self.scrub, self.spec) from None

    def _media_time(self, t: float | None) -> float:
        """Media time of a frame (or skipped packet) with timestamp ``t``; paces files."""
        index = self._index
        self._index += 1
        if self.spec.kind == "file":
            if t is None:
                t = index * self._frame_interval
            if self._first_t is None:
                self._first_t = t
            self._last_t = max(self._last_t, t - self._first_t)
            media_t = self._loop_offset + (t - self._first_t)
            if self.spec.realtime:
                self._anchor = self._pace(self._anchor, media_t)
            return media_t
        if self._use_pts and t is not None:
            return t  # RTP timestamps: the camera's own clock
        return time.monotonic()  # MJPEG over HTTP carries no timestamps

    def _pace(self, anchor: float | None, media_t: float) -> float:
        """Sleep until ``media_t`` on the wall clock; re-anchor if we fell far behind."""
        now = time.monotonic()
        if anchor is None:
            return now - media_t
        delay = anchor + media_t - now
        if delay > 0:
            self.stop.wait(delay)
        elif delay < -1.0:  # too slow to keep up: drop the backlog instead of bursting
            return now - media_t
        return anchor
