"""Plane geometry for grid polygons (lon/lat treated as planar: grids are small; no GIS dependency).

Polygons are GeoJSON-style rings: a list of ``(x, y)`` points, closed or not. Boundaries are shared by
neighbouring grids, so touching is never overlapping: only interiors count.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

Point = tuple[float, float]
Ring = Sequence[Point]

EPS = 1e-12


def _open(ring: Ring) -> list[Point]:
    pts = [(float(x), float(y)) for x, y in ring]
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts.pop()
    return pts


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return (abs(_cross(a, b, p)) <= EPS and min(a[0], b[0]) - EPS <= p[0] <= max(a[0], b[0]) + EPS
            and min(a[1], b[1]) - EPS <= p[1] <= max(a[1], b[1]) + EPS)


def on_boundary(p: Point, ring: Ring) -> bool:
    pts = _open(ring)
    return any(_on_segment(p, pts[i], pts[(i + 1) % len(pts)]) for i in range(len(pts)))


def contains(ring: Ring, p: Point, *, boundary: bool = True) -> bool:
    """Point in polygon (ray casting). ``boundary``: whether points on the edge count as inside."""
    pts = _open(ring)
    if len(pts) < 3:
        return False
    if on_boundary(p, pts):
        return boundary
    inside = False
    x, y = p
    for i in range(len(pts)):
        (x1, y1), (x2, y2) = pts[i], pts[(i + 1) % len(pts)]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _proper_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Segments ab and cd cross at a single interior point of both."""
    d1, d2 = _cross(c, d, a), _cross(c, d, b)
    d3, d4 = _cross(a, b, c), _cross(a, b, d)
    return ((d1 > EPS and d2 < -EPS) or (d1 < -EPS and d2 > EPS)) and \
        ((d3 > EPS and d4 < -EPS) or (d3 < -EPS and d4 > EPS))


def _centroid(pts: list[Point]) -> Point:
    area = cx = cy = 0.0
    for i in range(len(pts)):
        (x1, y1), (x2, y2) = pts[i], pts[(i + 1) % len(pts)]
        f = x1 * y2 - x2 * y1
        area += f
        cx += (x1 + x2) * f
        cy += (y1 + y2) * f
    if abs(area) <= EPS:
        return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return cx / (3 * area), cy / (3 * area)


def _crossing_t(a: Point, b: Point, c: Point, d: Point) -> float | None:
    """Where on ab (0..1) segment cd crosses it properly, if it does."""
    if not _proper_cross(a, b, c, d):
        return None
    d1, d2 = _cross(c, d, a), _cross(c, d, b)
    return d1 / (d1 - d2)


def _pieces_inside(pa: list[Point], pb: list[Point]) -> bool:
    """Is some piece of ``pa``'s boundary strictly inside ``pb``? Each edge is cut wherever it meets
    ``pb``'s boundary, so every open piece lies wholly inside, outside or on it: its midpoint tells."""
    for i in range(len(pa)):
        a, b = pa[i], pa[(i + 1) % len(pa)]
        length2 = (b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2
        if length2 <= EPS:
            continue
        cuts = {0.0, 1.0}
        for j in range(len(pb)):
            c, d = pb[j], pb[(j + 1) % len(pb)]
            if _on_segment(c, a, b):
                cuts.add(((c[0] - a[0]) * (b[0] - a[0]) + (c[1] - a[1]) * (b[1] - a[1])) / length2)
            if (t := _crossing_t(a, b, c, d)) is not None:
                cuts.add(t)
        ts = sorted(min(1.0, max(0.0, t)) for t in cuts)
        for t0, t1 in itertools.pairwise(ts):
            m = (t0 + t1) / 2
            if t1 - t0 > EPS and contains(pb, (a[0] + m * (b[0] - a[0]), a[1] + m * (b[1] - a[1])),
                                          boundary=False):
                return True
    return False


def interiors_overlap(a: Ring, b: Ring) -> bool:
    """True when the two polygons share interior area (shared edges or corners do not count)."""
    pa, pb = _open(a), _open(b)
    if len(pa) < 3 or len(pb) < 3:
        return False
    if _pieces_inside(pa, pb) or _pieces_inside(pb, pa):
        return True
    # both boundaries lie on each other (the same shape): compare an interior point
    return contains(b, _centroid(pa), boundary=False) or contains(a, _centroid(pb), boundary=False)


def within(inner: Ring, outer: Ring) -> bool:
    """Every vertex of ``inner`` lies inside or on ``outer`` and no edge crosses out of it."""
    pi, po = _open(inner), _open(outer)
    if not all(contains(po, p) for p in pi):
        return False
    return not any(_proper_cross(pi[i], pi[(i + 1) % len(pi)], po[j], po[(j + 1) % len(po)])
                   for i in range(len(pi)) for j in range(len(po)))
