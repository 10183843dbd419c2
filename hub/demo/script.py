"""Scripted people: who walks where and when, so that a scene has a known presence fraction.

An *episode* is one person's visit: walk in from a frame edge, stand somewhere (in the zone
for ``visit``, anywhere on the way for ``cross``), walk out at an edge. Episodes are placed
on the timeline so that people are visible for ``presence`` of the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hub.demo.background import NEAR_Y, SceneGeometry, person_height
from hub.demo.sprites import Sprite

WALK_HEIGHTS_PER_S = 0.75  # walking speed in body heights per second (~1.3 m/s)
ASPECT_MARGIN = 0.45  # sprite width / height upper bound, to start fully outside the frame


@dataclass(slots=True)
class Actor:
    track_id: int
    sprite: Sprite
    kind: str
    keys: list[tuple[float, float, float]]  # (t seconds, x px, feet y px), ascending t

    @property
    def start(self) -> float:
        return self.keys[0][0]

    @property
    def end(self) -> float:
        return self.keys[-1][0]

    def shift(self, dt: float) -> None:
        self.keys = [(t + dt, x, y) for t, x, y in self.keys]

    def at(self, t: float) -> tuple[float, float, bool] | None:
        """(x, feet_y, walking) at time ``t``; None outside the episode."""
        if t < self.start or t > self.end:
            return None
        for (t0, x0, y0), (t1, x1, y1) in zip(self.keys, self.keys[1:], strict=False):
            if t0 <= t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                walking = (x0, y0) != (x1, y1)
                return (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, walking)
        _, x, y = self.keys[-1]
        return (x, y, False)


def _walk_time(a: tuple[float, float], b: tuple[float, float], frame_h: int) -> float:
    dist = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    mean_h = person_height((a[1] + b[1]) / 2, frame_h)
    return dist / (WALK_HEIGHTS_PER_S * mean_h)


def _episode(kind: str, geo: SceneGeometry, size: tuple[int, int], rng: np.random.Generator,
             stand_s: float) -> list[tuple[float, float, float]]:
    """Keyframes starting at t=0: edge -> stand spot (stand_s) -> edge."""
    w, h = size
    left_first = bool(rng.integers(0, 2))
    zone_bottom = max(p[1] for p in geo.zone)

    def edge(left: bool, y: float) -> tuple[float, float]:
        off = ASPECT_MARGIN * person_height(y, h) / 2 + 4
        return (-off if left else w + off, y)

    if kind == "visit":
        sx, sy = geo.door_spot
        spot = (sx * w + rng.uniform(-0.02, 0.02) * w, sy * h + rng.uniform(-0.02, 0.02) * h)
        a = edge(left_first, rng.uniform(zone_bottom + 0.03, NEAR_Y - 0.02) * h)
        b = edge(bool(rng.integers(0, 2)), rng.uniform(zone_bottom + 0.03, NEAR_Y - 0.02) * h)
    else:
        y = rng.uniform(zone_bottom + 0.04, NEAR_Y) * h
        a = edge(left_first, y)
        b = edge(not left_first, y + rng.uniform(-0.03, 0.03) * h)
        spot = (rng.uniform(0.2, 0.8) * w, (a[1] + b[1]) / 2)
    t1 = _walk_time(a, spot, h)
    t2 = t1 + stand_s
    t3 = t2 + _walk_time(spot, b, h)
    return [(0.0, *a), (t1, *spot), (t2, *spot), (t3, *b)]


def plan_episodes(
    *,
    seconds: float,
    presence: float,
    geo: SceneGeometry,
    size: tuple[int, int],
    sprites: list[Sprite],
    rng: np.random.Generator,
    visit_share: float,
    dwell_s: tuple[float, float],
    first_entry_s: float | None,
) -> list[Actor]:
    """Actors whose visible time adds up to about ``presence * seconds``."""
    target = presence * seconds
    actors: list[Actor] = []
    total = 0.0
    while len(actors) < 400:
        visit = (first_entry_s is not None and not actors) or rng.random() < visit_share
        kind = "visit" if visit else "cross"
        stand = rng.uniform(*dwell_s) if visit else 0.0
        keys = _episode(kind, geo, size, rng, stand)
        dur = keys[-1][0]
        over = total + dur - target
        if over > 0:  # shorten the stand to fit; a visitor still stands at least dwell_s[0]
            cut = min(over, stand - (dwell_s[0] if visit else 0.0))
            if cut > 0:
                keys = [keys[0], keys[1], (keys[2][0] - cut, *keys[2][1:]), (keys[3][0] - cut, *keys[3][1:])]
                dur -= cut
            if total + dur - target > dur / 2 and actors:
                break
        actors.append(Actor(len(actors) + 1, sprites[len(actors) % len(sprites)], kind, keys))
        total += dur
        if total >= target:
            break
    # fill the remainder by letting people stand a little longer (visits) or pause (crosses)
    remainder = target - total
    if remainder > 0 and actors:
        extra = remainder / len(actors)
        for actor in actors:
            t2, t3 = actor.keys[2][0], actor.keys[3][0]
            actor.keys = [actor.keys[0], actor.keys[1], (t2 + extra, *actor.keys[2][1:]),
                          (t3 + extra, *actor.keys[3][1:])]
        total = target
    _place(actors, seconds, total, rng, first_entry_s)
    return actors


def _place(actors: list[Actor], seconds: float, total: float, rng: np.random.Generator,
           first_entry_s: float | None) -> None:
    """Put episodes on the timeline: one after another with random gaps, none at the clip ends
    (so the clip loops without a person popping in or out)."""
    margin = 0.5
    free = seconds - total - 2 * margin
    if free >= 0:
        gaps = rng.dirichlet(np.ones(len(actors) + 1)) * free
        t = margin
        for i, actor in enumerate(actors):
            if i == 0 and first_entry_s is not None:
                gap = min(max(first_entry_s - margin, 0.0), free)
                rest = free - gap
                gaps[1:] = gaps[1:] / max(gaps[1:].sum(), 1e-9) * rest
            else:
                gap = gaps[i]
            t += gap
            actor.shift(t)
            t += actor.end - actor.start
        return
    # more people than time: overlap episodes evenly
    longest = max(a.end - a.start for a in actors)
    span = max(seconds - longest - 2 * margin, 0.0)
    for i, actor in enumerate(actors):
        actor.shift(margin + span * i / max(len(actors) - 1, 1))
