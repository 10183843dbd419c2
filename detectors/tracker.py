"""ByteTrack-style multi-object tracking on columnar :class:`Detections`.

Two-stage association (Zhang et al., *ByteTrack*, 2022): detections at or above
``high_threshold`` are matched first against every live track (confirmed,
tentative and recently lost); the remaining low-confidence detections
(``low_threshold`` ≤ conf < ``high_threshold``) are then matched against the
tracks still unmatched that were seen on the previous update, which recovers
people who are partly occluded without starting tracks from weak boxes.

Each track carries a constant-velocity Kalman filter on the box centre and size.
Time is in seconds (not frames) because motion gating and overload skip frames:
predictions use the real gap and a track is dropped when unseen for
``lost_after_s``. Matching is optimal linear assignment on ``1 - IoU`` (a small
Hungarian solver in numpy; scipy is not a dependency), restricted to pairs of the
same class unless ``per_class=False`` (used for models whose classes are states
of one object, e.g. a fall model's ``Normal``/``Fall``).

Track ids are assigned when a track is confirmed (``min_hits`` detections), start
at 1 and only grow, so an id shown to an operator is never reused on a camera.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from hub.config import TrackerConfig

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

# Noise model in units of the box height (scale invariant), per second.
_STD_POS_MEAS = 0.05  # measurement noise of centre/size
_STD_POS_PROC = 0.25  # random walk of position per second
_STD_VEL_PROC = 0.5  # random walk of velocity per second
_STD_VEL_INIT = 1.0  # initial velocity uncertainty (heights per second)
_UNMATCHED = 1e6
_NEAR_DIST = 0.75  # centre distance, in units of the track box's sqrt(area)
_NEAR_SIZE = 1.5  # max ratio of widths and of heights for a distance match


def iou_matrix(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> F64:
    """Pairwise IoU of two box arrays in xyxy form: shape (len(a), len(b))."""
    a64 = np.asarray(a, np.float64).reshape(-1, 4)
    b64 = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a64) == 0 or len(b64) == 0:
        return np.zeros((len(a64), len(b64)), np.float64)
    x1 = np.maximum(a64[:, None, 0], b64[None, :, 0])
    y1 = np.maximum(a64[:, None, 1], b64[None, :, 1])
    x2 = np.minimum(a64[:, None, 2], b64[None, :, 2])
    y2 = np.minimum(a64[:, None, 3], b64[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a64[:, 2] - a64[:, 0]) * (a64[:, 3] - a64[:, 1])
    area_b = (b64[:, 2] - b64[:, 0]) * (b64[:, 3] - b64[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: F64 = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def linear_assignment(cost: F64) -> list[tuple[int, int]]:
    """Minimum-cost assignment of rows to columns (Hungarian method, O(n^3)).

    Works on rectangular matrices; returns ``(row, col)`` pairs, one per row when
    rows ≤ columns, otherwise one per column.
    """
    cost = np.asarray(cost, np.float64)
    if cost.size == 0:
        return []
    transposed = cost.shape[0] > cost.shape[1]
    c = cost.T if transposed else cost
    n, m = c.shape  # n <= m
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: row (1-based) assigned to column j
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = c[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            used_idx = np.nonzero(used)[0]
            u[p[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = int(way[j0])
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    if transposed:
        pairs = [(col, row) for row, col in pairs]
    return sorted(pairs)


def _near_cost(dets: npt.NDArray[np.floating], tracks: F64) -> F64:
    """Cost in (1, 2) for detection/track pairs whose centres are within
    ``_NEAR_DIST`` × the track's size (√area) and whose widths and heights agree within
    ``_NEAR_SIZE``; ``_UNMATCHED`` otherwise."""
    d = np.asarray(dets, np.float64).reshape(-1, 4)
    dc = (d[:, None, :2] + d[:, None, 2:]) / 2
    tc = (tracks[None, :, :2] + tracks[None, :, 2:]) / 2
    twh = np.maximum(tracks[None, :, 2:] - tracks[None, :, :2], 1e-3)
    dwh = np.maximum(d[:, None, 2:] - d[:, None, :2], 1e-3)
    scale = np.sqrt(twh[..., 0] * twh[..., 1])
    dist = np.linalg.norm(dc - tc, axis=2) / scale
    ratio = dwh / twh
    similar = np.all((ratio <= _NEAR_SIZE) & (ratio >= 1 / _NEAR_SIZE), axis=2)
    ok = similar & (dist <= _NEAR_DIST)
    out: F64 = np.where(ok, 1.0 + dist / _NEAR_DIST * 0.999, _UNMATCHED)
    return out


def _xyxy_to_z(box: npt.NDArray[np.floating]) -> F64:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)])


@dataclass
class _Track:
    class_id: int
    label: str
    mean: F64  # cx, cy, w, h, vcx, vcy, vw, vh
    cov: F64
    t: float  # time of ``mean``
    last_seen: float
    hits: int = 1
    track_id: int = -1  # assigned on confirmation
    missed_last: bool = False

    @classmethod
    def start(cls, box: npt.NDArray[np.floating], class_id: int, label: str, t: float) -> _Track:
        z = _xyxy_to_z(box)
        h = z[3]
        mean = np.concatenate([z, np.zeros(4)])
        std = np.array([_STD_POS_MEAS * h] * 4 + [_STD_VEL_INIT * h] * 4) * 2
        return cls(class_id, label, mean, np.diag(std**2), t, t)

    def predict(self, t: float) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        f = np.eye(8)
        f[:4, 4:] = np.eye(4) * dt
        h = max(self.mean[3], 1.0)
        q = np.diag([(_STD_POS_PROC * h) ** 2 * dt] * 4 + [(_STD_VEL_PROC * h) ** 2 * dt] * 4)
        self.mean = f @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 1.0)
        self.cov = f @ self.cov @ f.T + q
        self.t = t

    def correct(self, box: npt.NDArray[np.floating], t: float) -> None:
        self.predict(t)
        z = _xyxy_to_z(box)
        r = np.diag([(_STD_POS_MEAS * max(z[3], 1.0)) ** 2] * 4)
        hmat = np.zeros((4, 8))
        hmat[:, :4] = np.eye(4)
        s = hmat @ self.cov @ hmat.T + r
        gain = self.cov @ hmat.T @ np.linalg.inv(s)
        self.mean = self.mean + gain @ (z - hmat @ self.mean)
        self.cov = (np.eye(8) - gain @ hmat) @ self.cov
        self.last_seen = t
        self.hits += 1

    @property
    def xyxy(self) -> F64:
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class ByteTracker:
    """Tracks objects of one camera across updates. Not thread-safe; one per camera."""

    cfg: TrackerConfig
    per_class: bool = True
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1
    _last_t: float | None = None

    @property
    def live_tracks(self) -> int:
        """Tracks not yet dropped (confirmed, tentative or briefly lost)."""
        return len(self._tracks)

    @property
    def confirmed_tracks(self) -> int:
        return sum(1 for tr in self._tracks if tr.track_id >= 0)

    def age(self, t: float) -> None:
        """Advance time without detections (a frame that was not analysed).

        Drops tracks unseen for ``lost_after_s``; keeps everything else as is, since
        not looking is not the same as seeing nothing.
        """
        self._drop_stale(t)

    def reset(self) -> None:
        """Forget all tracks (ids keep growing)."""
        self._tracks.clear()

    def update(self, dets: Detections, t: float) -> Detections:
        """Associate this frame's detections; return confirmed tracks seen now.

        The returned boxes are this frame's detection boxes with ``tracker_id`` set;
        unconfirmed and lost tracks are not returned.
        """
        if self._last_t is not None and t < self._last_t:
            log.debug("tracker time went backwards (%.3f < %.3f); using last time", t, self._last_t)
            t = self._last_t
        self._last_t = t
        self._drop_stale(t)
        for tr in self._tracks:
            tr.predict(t)

        cfg = self.cfg
        conf = dets.confidence
        high = np.nonzero(conf >= cfg.high_threshold)[0]
        low = np.nonzero((conf >= cfg.low_threshold) & (conf < cfg.high_threshold))[0]
        assigned: dict[int, _Track] = {}  # detection index -> track

        pool = list(range(len(self._tracks)))
        matched1 = self._associate(dets, high, pool)
        for di, ti in matched1:
            assigned[di] = self._tracks[ti]
        used = {ti for _, ti in matched1}
        # Second stage: low-confidence boxes only continue tracks seen last time
        # (ByteTrack): they never revive lost tracks nor start new ones.
        pool2 = [ti for ti in pool if ti not in used and not self._tracks[ti].missed_last
                 and self._tracks[ti].track_id >= 0]
        matched2 = self._associate(dets, low, pool2)
        for di, ti in matched2:
            assigned[di] = self._tracks[ti]
        used |= {ti for _, ti in matched2}

        for di, tr in assigned.items():
            tr.correct(dets.xyxy[di], t)
            tr.missed_last = False
            if tr.track_id < 0 and tr.hits >= cfg.min_hits:
                tr.track_id = self._new_id()
        survivors: list[_Track] = []
        for ti, tr in enumerate(self._tracks):
            if ti in used:
                survivors.append(tr)
            elif tr.track_id >= 0:  # confirmed: keep as lost until lost_after_s
                tr.missed_last = True
                survivors.append(tr)
            # an unconfirmed track that misses an analysed frame is noise: drop it
        for hi in high.tolist():
            if hi in assigned:
                continue
            tr = _Track.start(dets.xyxy[hi], int(dets.class_id[hi]), dets.labels[hi], t)
            if cfg.min_hits <= 1:
                tr.track_id = self._new_id()
            survivors.append(tr)
            assigned[hi] = tr
        self._tracks = survivors

        keep = sorted(di for di, tr in assigned.items() if tr.track_id >= 0)
        out = dets[np.array(keep, np.int64)]
        out.tracker_id = np.array([assigned[di].track_id for di in keep], np.int64)
        return out

    def _associate(
        self, dets: Detections, det_idx: npt.NDArray[np.intp], track_idx: list[int]
    ) -> list[tuple[int, int]]:
        if len(det_idx) == 0 or not track_idx:
            return []
        tboxes = np.stack([self._tracks[ti].xyxy for ti in track_idx])
        iou = iou_matrix(dets.xyxy[det_idx], tboxes)
        # At low analysis rates a fast walker can move a body width between frames, before
        # the track has a velocity: besides IoU, accept a near, similar-sized box at a cost
        # above that of any IoU match.
        cost = np.minimum(np.where(iou >= self.cfg.match_iou, 1.0 - iou, _UNMATCHED),
                          _near_cost(dets.xyxy[det_idx], tboxes))
        if self.per_class:
            tcls = np.array([self._tracks[ti].class_id for ti in track_idx])
            cost = np.where(dets.class_id[det_idx][:, None] == tcls[None, :], cost, _UNMATCHED)
        out: list[tuple[int, int]] = []
        for r, c in linear_assignment(cost):
            if cost[r, c] < _UNMATCHED:
                out.append((int(det_idx[r]), track_idx[c]))
        return out

    def _drop_stale(self, t: float) -> None:
        limit = self.cfg.lost_after_s
        self._tracks = [tr for tr in self._tracks if t - tr.last_seen <= limit]

    def _new_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid
