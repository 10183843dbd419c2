"""KPIs per grid and local day against the real PostgreSQL, checked against figures worked out by hand.

Local days are 2024-05-01 (D1) and 2024-05-02 (D2) in Asia/Shanghai (UTC+8): several incidents sit
near local midnight (and one local 07:00 that is still the previous UTC day), so counting by UTC day
gives different rows and fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts import kpis
from alerts.grids import GridTree
from hub.config import GridConfig
from hub.metrics import Metrics
from hub.storage import Database
from tests.support import pg

pg_url = pg.pg_url

TZ = "Asia/Shanghai"
SH = ZoneInfo(TZ)
STREET, G1, G2, G_EMPTY = "440106001", "440106001001", "440106001002", "440106001003"
SINCE = datetime(2024, 5, 1, tzinfo=SH)
UNTIL = datetime(2024, 5, 3, tzinfo=SH)


def local(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2024, 5, day, hh, mm, ss, tzinfo=SH)


# id, grid, opened (local), state, satisfaction, accept after s, resolve after s, overdue, class
INCIDENTS: list[tuple[str, str | None, datetime, str, str | None, int | None, int | None, bool, str]] = [
    # G1, D1
    ("a1", G1, local(1, 7), "closed", "satisfied", 60, 600, False, "general"),  # UTC 04-30 23:00
    ("a6", G1, local(1, 9), "resolved", None, 30, 90, False, "general"),  # awaiting 回访: open
    ("a2", G1, local(1, 12), "closed", "basically_satisfied", 120, 1200, True, "professional"),  # late
    ("a3", G1, local(1, 18), "dispatched", "dissatisfied", None, None, True, "general"),  # 不满意: redo
    ("a4", G1, local(1, 23, 50), "false_alarm", None, None, None, False, "general"),
    ("a5", G1, local(1, 23, 59, 59), "closed", "satisfied", 300, 3000, False, "emergency"),
    # G1, D2
    ("b1", G1, local(2, 0, 10), "closed", "satisfied", 30, 300, False, "general"),  # UTC 05-01 16:10
    ("b2", G1, local(2, 7, 30), "supervised", None, 900, None, True, "professional"),  # UTC 05-01
    ("b3", G1, local(2, 23, 59), "received", None, None, None, False, "general"),
    # G2, D1 and D2
    ("c1", G2, local(1, 10), "resolved", None, 200, 2000, False, "emergency"),
    ("c2", G2, local(1, 20), "false_alarm", None, None, None, False, "general"),
    ("c3", G2, local(2, 0), "false_alarm", None, None, None, False, "general"),  # exactly local midnight
    # no grid, D1
    ("n1", None, local(1, 15), "received", None, None, None, False, "general"),
    # outside [SINCE, UNTIL): one second before, and exactly at the (exclusive) end
    ("x1", G1, local(1, 0) - timedelta(seconds=1), "closed", "satisfied", 10, 100, True, "general"),
    ("x2", G2, local(3, 0), "closed", "satisfied", 40, 400, True, "professional"),
]


FIGURES = ("opened", "closed", "false_alarms", "open", "closure_rate", "satisfaction_rate", "mean_accept_s",
           "p90_accept_s", "mean_resolve_s", "p90_resolve_s", "overdue")


def kpi(*figures: float | None) -> dict[str, Any]:
    """The KPI figures, in the order of FIGURES."""
    return dict(zip(FIGURES, figures, strict=True))


# percentile_cont(0.9) of n sorted values: position 0.9 * (n - 1), linear between neighbours.
EXPECTED_DAILY = [
    # G1 D1: 6 opened, closed a1 a2 a5, false alarm a4, open a3 a6 -> 办结率 3 / (6 - 1);
    # rated a1 a2 a3 a5, satisfied-ish a1 a2 a5 -> 3 / 4; accept 30 60 120 300 -> mean 127.5,
    # p90 at 2.7: 120 + 0.7 * 180 = 246; resolve 90 600 1200 3000 -> mean 1222.5, p90 1200 + 0.7 * 1800.
    {"grid": G1, "day": "2024-05-01"} | kpi(6, 3, 1, 2, 3 / 5, 3 / 4, 127.5, 246.0, 1222.5, 2460.0, 2),
    # G2 D1: c1 open (resolved), c2 false alarm -> 0 / 1; nobody rated; one accepted, one resolved.
    {"grid": G2, "day": "2024-05-01"} | kpi(2, 0, 1, 1, 0.0, None, 200.0, 200.0, 2000.0, 2000.0, 0),
    {"grid": None, "day": "2024-05-01"} | kpi(1, 0, 0, 1, 0.0, None, None, None, None, None, 0),
    # G1 D2: b1 closed, b2 b3 open -> 1 / 3; b1 rated satisfied -> 1.0; accept 30 900 -> mean 465,
    # p90 at 0.9: 30 + 0.9 * 870 = 813; resolve 300 only.
    {"grid": G1, "day": "2024-05-02"} | kpi(3, 1, 0, 2, 1 / 3, 1.0, 465.0, 813.0, 300.0, 300.0, 1),
    # G2 D2: only a false alarm -> no denominator for 办结率, nothing rated, accepted or resolved.
    {"grid": G2, "day": "2024-05-02"} | kpi(1, 0, 1, 0, None, None, None, None, None, None, 0),
]


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with Database(pg_url, timescaledb="off") as database:
        async with database.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO incidents (id, kind, class, state, grid, opened_at, accepted_at, resolved_at, "
                "closed_at, satisfaction, overdue, false_alarm_reason) VALUES (%s, 'intrusion', %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, %s)",
                [(id_, cls, state, grid, opened,
                  None if acc is None else opened + timedelta(seconds=acc),
                  None if res is None else opened + timedelta(seconds=res),
                  opened + timedelta(hours=2) if state in ("closed", "false_alarm") else None,
                  sat, overdue, "wind moved the banner" if state == "false_alarm" else None)
                 for id_, grid, opened, state, sat, acc, res, overdue, cls in INCIDENTS],
            )
        yield database


def street_tree() -> GridTree:
    return GridTree([
        GridConfig(code="440106", level="district"),
        GridConfig(code=STREET, level="street", parent="440106"),
        GridConfig(code=G1, level="grid", parent=STREET),
        GridConfig(code=G2, level="grid", parent=STREET),
        GridConfig(code="440106002", level="street", parent="440106"),
    ])


async def test_daily_kpis_per_grid_and_local_day(db: Database) -> None:
    async with db.pool.connection() as conn:
        rows = await kpis.daily_kpis(conn, since=SINCE, until=UNTIL, tz=TZ)
        only_g2 = await kpis.daily_kpis(conn, since=SINCE, until=UNTIL, tz=TZ, grid=G2)
        by_utc_day = await kpis.daily_kpis(conn, since=SINCE, until=UNTIL, tz="UTC", grid=G1)
    assert [(r["grid"], r["day"]) for r in rows] == [(e["grid"], e["day"]) for e in EXPECTED_DAILY]
    for row, expected in zip(rows, EXPECTED_DAILY, strict=True):
        assert row == pytest.approx(expected), (row["grid"], row["day"])
        assert row["opened"] == row["closed"] + row["false_alarms"] + row["open"]
    assert only_g2 == [r for r in rows if r["grid"] == G2]
    # The same G1 incidents by UTC day: a1 falls on 04-30; a6..b2 on 05-01; b3 (15:59Z) on 05-02.
    assert [(r["day"], r["opened"]) for r in by_utc_day] == [
        ("2024-04-30", 1), ("2024-05-01", 7), ("2024-05-02", 1)]


def split(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(period, grids and by_class; the KPI figures) of a summary."""
    return ({k: v for k, v in summary.items() if k not in FIGURES},
            {k: v for k, v in summary.items() if k in FIGURES})


async def test_summary_rolls_up_a_street_subtree(db: Database) -> None:
    street = street_tree().subtree(STREET)
    async with db.pool.connection() as conn:
        got = await kpis.summary(conn, since=SINCE, until=UNTIL, grids=street)
        everything = await kpis.summary(conn, since=SINCE, until=UNTIL)
        nothing = await kpis.summary(conn, since=SINCE, until=UNTIL, grids=[])
    # G1 + G2 over both days: 12 opened, closed a1 a2 a5 b1, false alarms a4 c2 c3 -> 办结率 4 / 9;
    # rated a1 a2 a3 a5 b1, four (basically) satisfied -> 0.8; overdue a2 a3 b2;
    # accept 30 30 60 120 200 300 900: mean 1640 / 7, p90 at 5.4: 300 + 0.4 * 600 = 540;
    # resolve 90 300 600 1200 2000 3000: mean 7190 / 6, p90 at 4.5: 2000 + 0.5 * 1000 = 2500.
    meta, figures = split(got)
    assert meta == {"since": SINCE.isoformat(), "until": UNTIL.isoformat(), "grids": sorted(street),
                    "by_class": {"general": 8, "professional": 2, "emergency": 2}}
    assert figures == pytest.approx(kpi(12, 4, 3, 5, 4 / 9, 0.8, 1640 / 7, 540.0, 7190 / 6, 2500.0, 3))
    # Without a filter the grid-less n1 joins (open, general); x1 and x2 stay outside the period.
    assert everything["grids"] is None
    assert (everything["opened"], everything["open"], everything["by_class"]["general"]) == (13, 6, 9)
    assert everything["closure_rate"] == pytest.approx(4 / 10)
    assert split(nothing) == ({"since": SINCE.isoformat(), "until": UNTIL.isoformat(), "grids": [],
                               "by_class": {"general": 0, "professional": 0, "emergency": 0}},
                              kpi(0, 0, 0, 0, None, None, None, None, None, None, 0))


async def test_today_is_the_local_day_of_now(db: Database) -> None:
    # 2024-05-02 01:30 UTC is 09:30 in Shanghai: today is D2 there, not D1.
    now = datetime(2024, 5, 2, 1, 30, tzinfo=ZoneInfo("UTC"))
    assert kpis.local_day(TZ, now) == (local(2, 0), local(3, 0))
    async with db.pool.connection() as conn:
        rows = await kpis.today(conn, tz=TZ, now=now, grid_codes=street_tree().subtree(STREET))
        only_g1 = await kpis.today(conn, tz=TZ, now=now, grid_codes=[G1])
        with pytest.raises(ValueError, match="timezone-aware"):
            await kpis.today(conn, tz=TZ, now=datetime(2024, 5, 2, 9, 30))
        with pytest.raises(ValueError, match="time zone"):
            await kpis.daily_kpis(conn, since=SINCE, until=UNTIL, tz="Mars/Olympus")
    assert rows == [e for e in EXPECTED_DAILY if e["day"] == "2024-05-02"]
    assert [r["grid"] for r in only_g1] == [G1]


def sample(metrics: Metrics, grid: str, kpi_name: str) -> float | None:
    value: float | None = metrics.registry.get_sample_value("hub_kpi", {"grid": grid, "kpi": kpi_name})
    return value


async def test_kpi_gauges_follow_today(db: Database) -> None:
    metrics = Metrics()
    gauges = kpis.KpiGauges(metrics, db.pool, tz=TZ, grid_codes=[G1, G2, G_EMPTY])
    await gauges.refresh(now=local(2, 9, 30))
    assert {k: sample(metrics, G1, k) for k in kpis.GAUGE_KPIS} == pytest.approx({
        "opened": 3, "closed": 1, "closure_rate": 1 / 3, "satisfaction_rate": 1.0, "mean_accept_s": 465.0,
        "mean_resolve_s": 300.0, "overdue": 1})
    # G2's only incident today is a false alarm: counts, but no rates or means (no sample, not 0).
    assert {k: sample(metrics, G2, k) for k in kpis.GAUGE_KPIS} == {
        "opened": 1, "closed": 0, "closure_rate": None, "satisfaction_rate": None, "mean_accept_s": None,
        "mean_resolve_s": None, "overdue": 0}
    assert (sample(metrics, G_EMPTY, "opened"), sample(metrics, G_EMPTY, "closure_rate")) == (0, None)

    await gauges.refresh(now=local(1, 20))  # D1: the grid-less incident shows as "unassigned"
    assert (sample(metrics, kpis.UNASSIGNED, "opened"), sample(metrics, G1, "opened")) == (1, 6)

    await gauges.refresh(now=local(3, 8))  # next day: only x2 (G2); yesterday's figures are gone
    assert {k: sample(metrics, G1, k) for k in kpis.GAUGE_KPIS} == {
        "opened": 0, "closed": 0, "closure_rate": None, "satisfaction_rate": None, "mean_accept_s": None,
        "mean_resolve_s": None, "overdue": 0}
    assert sample(metrics, kpis.UNASSIGNED, "opened") == 0
    assert {k: sample(metrics, G2, k) for k in kpis.GAUGE_KPIS} == pytest.approx({
        "opened": 1, "closed": 1, "closure_rate": 1.0, "satisfaction_rate": 1.0, "mean_accept_s": 40.0,
        "mean_resolve_s": 400.0, "overdue": 1})


async def test_kpi_gauges_run_refreshes_periodically(db: Database) -> None:
    metrics = Metrics()
    gauges = kpis.KpiGauges(metrics, db.pool, tz=TZ, grid_codes=[G_EMPTY])
    task = asyncio.create_task(gauges.run(period_s=0.05))
    try:
        # Real clock: nothing was opened today in these grids, so the configured grid reads 0.
        assert await eventually(lambda: sample(metrics, G_EMPTY, "opened") == 0)
        async with db.pool.connection() as conn:  # a new incident in a new grid shows on a later pass
            await conn.execute("INSERT INTO incidents (id, kind, grid, overdue) "
                               "VALUES ('t1', 'fire', 'g9', true)")
        assert await eventually(lambda: sample(metrics, "g9", "overdue") == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sample(metrics, "g9", "opened") == 1


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()
