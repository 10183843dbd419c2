"""Grid polygon geometry: point in polygon, overlap of interiors, containment."""

from __future__ import annotations

from alerts.geo import contains, interiors_overlap, within

SQUARE = [(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)]


def test_point_in_polygon_with_and_without_the_boundary() -> None:
    assert contains(SQUARE, (1.0, 1.0))
    assert not contains(SQUARE, (3.0, 1.0))
    assert contains(SQUARE, (2.0, 1.0))
    assert not contains(SQUARE, (2.0, 1.0), boundary=False)
    assert contains([*SQUARE, SQUARE[0]], (0.5, 0.5))  # a closed GeoJSON ring works too


def test_concave_polygon() -> None:
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    assert contains(u_shape, (0.5, 2.5))
    assert not contains(u_shape, (1.5, 2.0))  # in the notch


def test_neighbours_sharing_an_edge_do_not_overlap_but_crossing_ones_do() -> None:
    right = [(2.0, 0.0), (4.0, 0.0), (4.0, 2.0), (2.0, 2.0)]
    assert not interiors_overlap(SQUARE, right)
    shifted = [(1.0, 1.0), (3.0, 1.0), (3.0, 3.0), (1.0, 3.0)]
    assert interiors_overlap(SQUARE, shifted)
    assert interiors_overlap(SQUARE, list(SQUARE))  # identical
    inner = [(0.5, 0.5), (1.0, 0.5), (1.0, 1.0)]
    assert interiors_overlap(SQUARE, inner)  # one inside the other
    corner = [(2.0, 2.0), (3.0, 2.0), (3.0, 3.0)]
    assert not interiors_overlap(SQUARE, corner)  # touching at a corner


def test_within() -> None:
    assert within([(0, 0), (1, 0), (1, 1)], SQUARE)
    assert within(SQUARE, SQUARE)
    assert not within([(1, 1), (3, 1), (3, 2)], SQUARE)
