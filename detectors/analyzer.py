"""The analysis loop: frames from many cameras → one batched detector call → tracks → rule hits.

The analyzer is event-driven: sources that offer ``add_frame_listener`` (a
:class:`~streams.reader.StreamReader` does) wake it when a new frame lands in their
latest-frame slot; other sources are polled at twice ``detect.fps`` (at least 20 Hz).
A new frame is taken at once and run through the camera's motion gate on the loop.
Frames worth analysing wait for the backend, at most ``PENDING`` per camera (beyond that the
oldest waiting one is discarded and counted as ``skipped``: overload); a batch of at most
``min(detect.batch.max_size, backend.max_batch)`` frames goes to a worker thread
(``detect.threads`` of them, never the event loop) when it is full, when
``batch.max_wait_ms`` passed since its oldest frame started waiting, or when every camera
is waiting or in flight. A camera never has two calls in flight at once (tracking needs
its frames in order; should ``PENDING`` be raised, one call carries a camera's waiting
frames in order); its frames keep being gated as they arrive meanwhile, and one more frame
to infer may wait, so inference pipelines instead of stalling the camera for a whole call.
Polled sources are treated as plain latest-frame slots: they are read only while their
camera has nothing waiting or in flight, and frames replaced in a slot count as
``skipped`` too. So there is never a backlog beyond ``PENDING`` frames per camera. A camera
without motion is skipped unless it still has live tracks and ``motion.keepalive_s``
passed since its last inference (people standing still).

Idle cameras: when ``motion.idle_keyframes`` is on and a source offers ``set_idle``,
a camera without motion and without live tracks for ``motion.idle_after_s`` is told
to decode key frames only (about one frame per GOP still arrives and is gated);
motion on such a frame, or a live track, switches it back to every frame.

Results go through the camera's :class:`~detectors.tracker.ByteTracker`, its zone rules and
fall rules, and are published on the bus: a :class:`CameraResult` on ``detections`` for every analysed
frame and each :class:`~hub.events.RuleHit` on ``rule_hit``.

Times given to trackers and rules are the frames' ``captured_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from detectors.backends.base import DetectorBackend
from detectors.detections import Detections
from detectors.fall import FallParams, FallRule
from detectors.motion import MotionGate
from detectors.tracker import ByteTracker
from detectors.zones import ZoneRule
from hub.bus import TOPIC_DETECTIONS, TOPIC_RULE_HIT, Bus
from hub.config import CameraBase, DetectSection
from hub.events import RuleHit
from hub.metrics import Metrics
from streams.frame import Frame

log = logging.getLogger(__name__)

PENDING = 1  # frames per camera waiting for inference while one is in flight (2 measured worse)
_MAX_POLL_S = 0.05  # sources without add_frame_listener: polled at >= 2x fps and >= 20 Hz
_ERROR_LOG_EVERY_S = 30.0


class FrameSource(Protocol):
    """Anything with a latest-frame slot (``streams.reader.StreamReader`` is one)."""

    def latest(self) -> Frame | None: ...


class NotifyingFrameSource(FrameSource, Protocol):
    """Optional: a source that calls back (from any thread) when a new frame is in its slot."""

    def add_frame_listener(self, callback: Callable[[], None]) -> Callable[[], None]: ...


class IdleFrameSource(FrameSource, Protocol):
    """Optional: a source that can decode key frames only while its camera is quiet."""

    def set_idle(self, idle: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class CameraResult:
    """One analysed frame: tracked detections (boxes in ``frame.image`` pixels)."""

    camera_id: str
    frame: Frame
    detections: Detections
    at: float
    hits: tuple[RuleHit, ...] = ()
    fall_detections: Detections | None = None


@dataclass(slots=True)
class CameraStats:
    analysed: int = 0  # new frames taken from the source (inferred + motion_skipped)
    motion_skipped: int = 0
    inferred: int = 0
    hits: int = 0
    skipped: int = 0  # frames never analysed: overwritten in the source, or replaced while waiting (overload)
    idle: bool = False  # the camera currently decodes key frames only
    idle_entered: int = 0  # times the camera was switched to key frames only
    idle_left: int = 0  # times motion or a track switched it back


@dataclass(slots=True)
class AnalyzerStats:
    cameras: dict[str, CameraStats] = field(default_factory=dict)
    ticks: int = 0  # wake-ups (frame arrivals, polls, finished inference calls)
    infer_calls: int = 0
    frames_inferred: int = 0
    infer_seconds: float = 0.0
    infer_errors: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # last 1000 batch sizes

    @property
    def mean_batch_size(self) -> float:
        return self.frames_inferred / self.infer_calls if self.infer_calls else 0.0

    def camera(self, camera_id: str) -> CameraStats:
        return self.cameras.setdefault(camera_id, CameraStats())


@dataclass
class _Camera:
    """Per-camera analysis state."""

    camera_id: str
    gate: MotionGate | None
    tracker: ByteTracker
    fall_tracker: ByteTracker | None
    last_seq: int | None = None
    last_infer_t: float | None = None
    inflight: bool = False  # a frame of this camera is in inference
    pending: list[Frame] = field(default_factory=list)  # frames waiting for inference, oldest first
    pending_since: float = 0.0  # loop time the camera started waiting
    notifying: bool = False  # the source wakes us on arrival (else it is polled)

    @property
    def busy(self) -> bool:
        return self.inflight or bool(self.pending)
    idle: bool = False
    last_active_t: float | None = None  # capture time of the last motion / live track
    set_idle: Callable[[bool], None] | None = None
    frame_size: tuple[int, int] | None = None
    zone_rules: list[ZoneRule] = field(default_factory=list)
    fall_rules: list[FallRule] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Batch:
    main: list[Detections]
    fall: list[Detections] | None
    seconds: float


class Analyzer:
    """Runs detection, tracking and rules for a set of cameras on one backend."""

    def __init__(
        self,
        cfg: DetectSection,
        cameras: Sequence[CameraBase],
        backend: DetectorBackend,
        bus: Bus,
        *,
        metrics: Metrics | None = None,
        fall_backend: DetectorBackend | None = None,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.fall_backend = fall_backend
        self.bus = bus
        self.metrics = metrics
        self.stats = AnalyzerStats()
        self._configs = {c.id: c for c in cameras}
        self._cams: dict[str, _Camera] = {}
        self._last: dict[str, CameraResult] = {}
        self._labels = frozenset(cfg.labels)
        self._batch_limit = max(1, min(cfg.batch.max_size, int(backend.max_batch)))
        self._last_error_log = 0.0

    # -- public -------------------------------------------------------------------------

    def last_result(self, camera_id: str) -> CameraResult | None:
        return self._last.get(camera_id)

    async def run(self, sources: Mapping[str, FrameSource]) -> None:
        """Analyse until cancelled. Cancelling returns promptly (a running infer call
        finishes in its thread; its result is discarded)."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="infer")
        wake = asyncio.Event()

        def notify() -> None:  # any thread (a reader's decode thread)
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

        removers: list[Callable[[], None]] = []
        polled = 0
        idle_ok = self.cfg.motion.enabled and self.cfg.motion.idle_keyframes
        for cam_id, source in sources.items():
            cam = self._camera(cam_id)
            setter = getattr(source, "set_idle", None)
            cam.set_idle = setter if idle_ok and callable(setter) else None
            add = getattr(source, "add_frame_listener", None)
            cam.notifying = callable(add)
            if callable(add):
                removers.append(add(notify))
            else:
                polled += 1
        poll_s = min(_MAX_POLL_S, 0.5 / self.cfg.fps) if polled else None
        max_wait = self.cfg.batch.max_wait_ms / 1000.0
        cams = [self._cams[cam_id] for cam_id in sources]
        inflight: dict[asyncio.Future[_Batch], list[tuple[_Camera, Frame]]] = {}
        log.info("analyzer: %d cameras (%d polled), backend %s, batch ≤ %d, %.1f fps", len(sources), polled,
                 self.backend.name, self._batch_limit, self.cfg.fps)
        try:
            while True:
                wake.clear()
                self.stats.ticks += 1
                for fut in [f for f in inflight if f.done()]:
                    self._finish(inflight.pop(fut), fut)
                for cam, source in zip(cams, sources.values(), strict=True):
                    if cam.busy and not cam.notifying:
                        continue  # a plain slot: read it when this camera can be inferred again
                    frame = source.latest()
                    if frame is None or frame.seq == cam.last_seq:
                        continue
                    if self._take(cam, frame):
                        if not cam.pending:
                            cam.pending_since = loop.time()
                        cam.pending.append(frame)
                        if len(cam.pending) > PENDING:  # inference is too far behind: overload
                            del cam.pending[0]
                            st = self.stats.camera(cam.camera_id)
                            st.analysed -= 1
                            st.skipped += 1
                timeout = poll_s
                ready = sorted((c for c in cams if c.pending and not c.inflight),
                               key=lambda c: c.pending_since)
                if ready and len(inflight) < self.cfg.threads:
                    waiting = sum(len(c.pending) for c in ready)
                    everyone_in = waiting >= self._batch_limit or all(c.busy for c in cams)
                    due = ready[0].pending_since + max_wait
                    if everyone_in or loop.time() >= due:
                        chunk: list[tuple[_Camera, Frame]] = []
                        for cam in ready:
                            room = self._batch_limit - len(chunk)
                            if room <= 0:
                                break
                            chunk += [(cam, f) for f in cam.pending[:room]]
                            del cam.pending[:room]
                            cam.pending_since = loop.time()
                            cam.inflight = True
                        fut = loop.run_in_executor(executor, self._infer, [f.image for _, f in chunk])
                        fut.add_done_callback(lambda _f: wake.set())
                        inflight[fut] = chunk
                        continue  # another worker may be free, and new frames may be waiting
                    left = max(0.0, due - loop.time())
                    timeout = left if timeout is None else min(timeout, left)
                if timeout is None:
                    await wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await wake.wait()
        finally:
            for remove in removers:
                remove()
            for fut in inflight:
                fut.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    def _finish(self, chunk: list[tuple[_Camera, Frame]], fut: asyncio.Future[_Batch]) -> None:
        """An inference call ended: track, evaluate rules, publish (on the loop)."""
        for cam, _ in chunk:
            cam.inflight = False
        exc = fut.exception()
        if exc is not None:
            if not isinstance(exc, Exception):
                raise exc
            self._infer_failed(exc, len(chunk))
            return
        res = fut.result()
        self._account(res, len(chunk))
        for k, (cam, frame) in enumerate(chunk):
            self._analyse(cam, frame, res.main[k], None if res.fall is None else res.fall[k])

    # -- steps --------------------------------------------------------------------------

    def _camera(self, cam_id: str) -> _Camera:
        cam = self._cams.get(cam_id)
        if cam is None:
            mcfg = self.cfg.motion
            cam = _Camera(
                camera_id=cam_id,
                gate=MotionGate(threshold=mcfg.threshold, min_area=mcfg.min_area) if mcfg.enabled else None,
                tracker=ByteTracker(self.cfg.tracker),
                fall_tracker=ByteTracker(self.cfg.tracker, per_class=False) if self.fall_backend else None,
            )
            self._cams[cam_id] = cam
            self.stats.camera(cam_id)
        return cam

    def _take(self, cam: _Camera, frame: Frame) -> bool:
        """Account a new frame; True when it should be inferred."""
        st = self.stats.camera(cam.camera_id)
        if cam.last_seq is not None and frame.seq > cam.last_seq + 1:
            st.skipped += frame.seq - cam.last_seq - 1
        cam.last_seq = frame.seq
        st.analysed += 1
        if cam.frame_size != frame.size:
            self._build_rules(cam, frame.size)
        if cam.gate is None:
            return True
        moving = cam.gate.update(frame.image)
        t = frame.captured_at
        live = self._live(cam)
        # The gate's first frame, and a scene-wide change (lights, IR switch), only (re)learn
        # the background: infer them anyway, or someone standing still in the scene at that
        # moment would be absorbed into the background and never seen.
        if moving or cam.gate.last.reason in ("warmup", "global-change"):
            self._activity(cam, t, active=True)
            return True
        self._activity(cam, t, active=live > 0)
        keepalive = self.cfg.motion.keepalive_s
        if live and (cam.last_infer_t is None or t - cam.last_infer_t >= keepalive):
            return True
        st.motion_skipped += 1
        if not cam.busy:  # else the frame in flight is newer than the tracker's state: let it land
            cam.tracker.age(t)
            if cam.fall_tracker is not None:
                cam.fall_tracker.age(t)
        if self.metrics is not None:
            self.metrics.frames_gated.labels(camera=cam.camera_id).inc()
        return False

    @staticmethod
    def _live(cam: _Camera) -> int:
        return cam.tracker.live_tracks + (cam.fall_tracker.live_tracks if cam.fall_tracker else 0)

    def _activity(self, cam: _Camera, t: float, *, active: bool) -> None:
        """Note motion/tracks at capture time ``t``; switch the camera's idle decoding."""
        if active or cam.last_active_t is None or t < cam.last_active_t:
            cam.last_active_t = t
        if cam.set_idle is None:
            return
        st = self.stats.camera(cam.camera_id)
        if active and cam.idle:
            cam.set_idle(False)
            cam.idle = st.idle = False
            st.idle_left += 1
            log.debug("%s: activity, decoding every frame again", cam.camera_id)
        elif not active and not cam.idle and t - cam.last_active_t >= self.cfg.motion.idle_after_s:
            cam.set_idle(True)
            cam.idle = st.idle = True
            st.idle_entered += 1
            log.debug("%s: quiet for %.1f s, decoding key frames only", cam.camera_id, t - cam.last_active_t)

    def _build_rules(self, cam: _Camera, size: tuple[int, int]) -> None:
        cam.frame_size = size
        grace = max(1.0, 1.5 * self.cfg.motion.keepalive_s)
        cam.zone_rules = []
        cam.fall_rules = []
        fall_zones = []
        for zone in self._configs[cam.camera_id].zones if cam.camera_id in self._configs else []:
            if zone.rule == "intrusion":
                cam.zone_rules.append(ZoneRule(zone, size, camera_id=cam.camera_id, grace_s=grace))
            else:
                fall_zones.append(zone)
        cam.fall_rules = [FallRule(z, size, camera_id=cam.camera_id) for z in fall_zones]
        if not fall_zones and self.fall_backend is not None:
            # Whole frame: the fall model only; the geometric fallback is too weak unzoned.
            cam.fall_rules.append(
                FallRule(None, size, camera_id=cam.camera_id, params=FallParams(geometric=False)))

    def _infer(self, images: list[npt.NDArray[np.uint8]]) -> _Batch:
        """Runs in a worker thread."""
        start = time.perf_counter()
        main = self.backend.infer(images)
        fall = self.fall_backend.infer(images) if self.fall_backend is not None else None
        return _Batch(main, fall, time.perf_counter() - start)

    def _account(self, res: _Batch, n: int) -> None:
        st = self.stats
        st.infer_calls += 1
        st.frames_inferred += n
        st.infer_seconds += res.seconds
        st.batch_sizes.append(n)
        del st.batch_sizes[:-1000]
        if self.metrics is not None:
            self.metrics.inference_seconds.labels(backend=self.backend.name).observe(res.seconds)
            self.metrics.batch_size.observe(n)

    def _infer_failed(self, exc: Exception, n: int) -> None:
        self.stats.infer_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_EVERY_S:
            self._last_error_log = now
            log.error("inference of %d frames failed (%d failures so far): %s", n,
                      self.stats.infer_errors, exc, exc_info=exc)

    def _analyse(self, cam: _Camera, frame: Frame, raw: Detections, raw_fall: Detections | None) -> None:
        t = frame.captured_at
        cam.last_infer_t = t
        st = self.stats.camera(cam.camera_id)
        st.inferred += 1
        if self.metrics is not None:
            self.metrics.frames_analysed.labels(camera=cam.camera_id).inc()
        dets = raw.with_label(*self._labels)
        tracked = cam.tracker.update(dets, t)
        hits: list[RuleHit] = []
        for rule in cam.zone_rules:
            hits += rule.update(tracked, t, frame_seq=frame.seq)
        fall_tracked = None
        if cam.fall_tracker is not None and raw_fall is not None:
            fall_tracked = cam.fall_tracker.update(raw_fall, t)
        for fall_rule in cam.fall_rules:
            hits += fall_rule.update(t, fall_dets=fall_tracked, person_dets=tracked, frame_seq=frame.seq)
        if self._live(cam):
            self._activity(cam, t, active=True)
        result = CameraResult(cam.camera_id, frame, tracked, time.time(), tuple(hits), fall_tracked)
        self._last[cam.camera_id] = result
        self.bus.publish(TOPIC_DETECTIONS, result)
        for hit in hits:
            st.hits += 1
            log.info("rule hit: camera %s rule %s zone %s track %d (%s %.2f)", hit.camera_id, hit.rule,
                     hit.zone, hit.track_id, hit.label, hit.confidence)
            self.bus.publish(TOPIC_RULE_HIT, hit)
