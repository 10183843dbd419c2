#!/usr/bin/python3
"""A real RTSP server for tests, demos and benchmarks (GStreamer gst-rtsp-server).

Run it with Debian's ``/usr/bin/python3`` (it needs ``gi`` + GstRtspServer 1.0)::

    /usr/bin/python3 scripts/rtsp_server.py --port 8554 \
        --mount cam1=clips/gate.mp4 --mount cam2=clips/yard.mp4 [--user u --password p] \
        [--auth basic|digest] [--test-pattern pattern]

Each ``--mount NAME=PATH`` (an H.264 .mp4) is served at ``rtsp://HOST:PORT/NAME`` looping
forever at real time, without re-encoding:

* At start-up each clip is demuxed once (``qtdemux ! h264parse``) into memory as Annex-B
  access units (SPS/PPS repeated before every IDR so clients can join at any key frame).
* Each mount is one shared media (one pipeline, however many clients):
  ``appsrc (live) ! rtph264pay``. The ``need-data`` callback pushes the cached access units
  with PTS/DTS offset by ``loop * clip_length`` from the running time at which the media
  started, so timestamps stay monotonic across loops and the RTSP sinks pace the stream by
  the pipeline clock (real time). The payloader only packetises: CPU is tiny per stream.
* The media is live: a client joining later gets the stream "as it is now", like a camera.

``--test-pattern NAME`` adds ``videotestsrc ! x264enc`` (live encoding, costs CPU).
``--user/--password`` require authentication for every mount: HTTP Basic (``--auth basic``, the
default) or Digest (``--auth digest``, RFC 2617 MD5 as GStreamer >= 1.16 implements it; Basic is
then refused). TCP and UDP transports are on.
Prints ``READY port=<port>`` on stdout once listening and ``CONNECT`` for every client
connection. ``--watch-stdin`` exits when stdin
closes (so the server dies with the test process that started it).
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

_LEAD_IN = 100 * Gst.MSECOND  # first buffer's timestamp is this far ahead of "now"


@dataclass
class Clip:
    """A clip demuxed once into memory: Annex-B access units with their timestamps."""

    path: str
    caps: Gst.Caps
    buffers: list[Gst.Buffer]
    times: list[tuple[int, int, int]]  # (pts, dts, duration) relative to the clip start, ns
    length: int  # ns; the offset added per loop

    @classmethod
    def load(cls, path: str) -> Clip:
        pipeline = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 '
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! appsink name=sink sync=false emit-signals=false max-buffers=0"
        )
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(Gst.State.PLAYING)
        buffers: list[Gst.Buffer] = []
        caps: Gst.Caps | None = None
        while True:
            sample = sink.emit("pull-sample")
            if sample is None:
                break
            caps = caps or sample.get_caps()
            buffers.append(sample.get_buffer())
        bus = pipeline.get_bus()
        err = bus.pop_filtered(Gst.MessageType.ERROR)
        pipeline.set_state(Gst.State.NULL)
        if err is not None or caps is None or not buffers:
            detail = err.parse_error()[0].message if err is not None else "no H.264 video found"
            raise SystemExit(f"cannot load {path}: {detail}")

        none = Gst.CLOCK_TIME_NONE
        raw: list[tuple[int, int]] = []
        for b in buffers:
            pts = b.pts if b.pts != none else b.dts
            dts = b.dts if b.dts != none else pts
            raw.append((pts, dts))
        if any(p == none for p, _ in raw):
            raise SystemExit(f"cannot load {path}: access units without timestamps")
        start = min(min(p, d) for p, d in raw)
        dts_sorted = [d for _, d in raw]
        steps = [b - a for a, b in itertools.pairwise(dts_sorted) if b > a]
        frame = sorted(steps)[len(steps) // 2] if steps else 40 * Gst.MSECOND
        times: list[tuple[int, int, int]] = []
        for b, (p, d) in zip(buffers, raw, strict=True):
            dur = b.duration if b.duration != none else frame
            times.append((p - start, d - start, dur))
        length = max(d for _, d, _ in times) + frame
        s = caps.get_structure(0)
        fps = s.get_fraction("framerate")
        print(f"loaded {path}: {len(buffers)} access units, {length / Gst.SECOND:.2f} s, "
              f"{s.get_value('width')}x{s.get_value('height')} @ {fps[1]}/{fps[2]}",
              file=sys.stderr, flush=True)
        return cls(path, caps, buffers, times, length)


class Feeder:
    """Feeds one media's appsrc with a clip, looping, on the pipeline's running time."""

    def __init__(self, clip: Clip, appsrc: Gst.Element) -> None:
        self.clip = clip
        self.appsrc = appsrc
        self.index = 0
        self.loop = 0
        self.base: int | None = None

    def need_data(self, src: Gst.Element, _length: int) -> None:
        if self.base is None:
            clock = src.get_clock()
            now = clock.get_time() - src.get_base_time() if clock is not None else 0
            self.base = max(0, now) + _LEAD_IN
        clip = self.clip
        pts, dts, dur = clip.times[self.index]
        offset = self.base + self.loop * clip.length
        buf = clip.buffers[self.index].copy()  # shares the memory; only metadata is new
        buf.pts = pts + offset
        buf.dts = dts + offset
        buf.duration = dur
        self.index += 1
        if self.index == len(clip.buffers):
            self.index = 0
            self.loop += 1
        src.emit("push-buffer", buf)


class ClipMediaFactory(GstRtspServer.RTSPMediaFactory):
    """One shared, live media per mount, fed from a cached clip."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.feeders: dict[int, Feeder] = {}
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=false max-bytes=0 "
            "max-buffers=8 block=false ! rtph264pay name=pay0 pt=96 )"
        )
        self.set_shared(True)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: Any, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        appsrc.set_property("caps", self.clip.caps)
        feeder = Feeder(self.clip, appsrc)
        key = id(media)
        self.feeders[key] = feeder  # keep it alive as long as the media
        appsrc.connect("need-data", feeder.need_data)
        media.connect("unprepared", lambda *_: self.feeders.pop(key, None))


def _test_pattern_factory(width: int, height: int, fps: int) -> GstRtspServer.RTSPMediaFactory:
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
        f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        "bitrate=1500 ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 )"
    )
    f.set_shared(True)
    return f


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    p.add_argument("--port", type=int, default=8554, help="RTSP port (0 = any free port).")
    p.add_argument("--mount", action="append", default=[], metavar="NAME=PATH",
                   help="Serve an H.264 .mp4 at /NAME, looping at real time (repeatable).")
    p.add_argument("--test-pattern", action="append", default=[], metavar="NAME",
                   help="Serve a live videotestsrc+x264enc stream at /NAME (repeatable).")
    p.add_argument("--pattern-size", default="640x360", help="WxH of test patterns.")
    p.add_argument("--pattern-fps", type=int, default=25, help="Frame rate of test patterns.")
    p.add_argument("--user", help="Require authentication with this user name.")
    p.add_argument("--password", help="Password for --user.")
    p.add_argument("--auth", choices=("basic", "digest"), default="basic",
                   help="Authentication scheme required with --user (default: basic).")
    p.add_argument("--watch-stdin", action="store_true", help="Exit when stdin reaches EOF.")
    args = p.parse_args(argv)
    if not args.mount and not args.test_pattern:
        p.error("give at least one --mount or --test-pattern")
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    factories: list[GstRtspServer.RTSPMediaFactory] = []
    clips: dict[str, Clip] = {}
    for spec in args.mount:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--mount wants NAME=PATH, got {spec!r}")
        clip = clips.get(path) or Clip.load(path)
        clips[path] = clip
        factory: GstRtspServer.RTSPMediaFactory = ClipMediaFactory(clip)
        mounts.add_factory(f"/{name}", factory)
        factories.append(factory)
    w, h = (int(v) for v in args.pattern_size.lower().split("x"))
    for name in args.test_pattern:
        factory = _test_pattern_factory(w, h, args.pattern_fps)
        mounts.add_factory(f"/{name}", factory)
        factories.append(factory)

    for factory in factories:
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if args.auth == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password, token)
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        role = Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
        for factory in factories:
            factory.add_role_from_structure(role)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    # Clean up sessions whose clients vanished without TEARDOWN (e.g. killed readers).
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: pool.cleanup() >= 0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: loop.quit() or False)
    if args.watch_stdin:
        GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                          GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
                          lambda *_: _stdin_event(loop))

    # One line per RTSP connection, so tests can count connection attempts at the server.
    server.connect("client-connected", lambda *_: print("CONNECT", flush=True))
    print(f"READY port={server.get_bound_port()}", flush=True)
    loop.run()
    return 0


def _stdin_event(loop: GLib.MainLoop) -> bool:
    data = sys.stdin.buffer.read1(4096) if hasattr(sys.stdin.buffer, "read1") else b""
    if not data:
        loop.quit()
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
