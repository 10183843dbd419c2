"""Closed-loop KPIs (办结率, 满意率, time to accept/resolve, overdue) per grid and local day, from SQL.

The cohort is the incidents **opened** in ``[since, until)`` (``opened_at``), grouped by grid and by
the local calendar day of ``opened_at`` in ``tz`` (``opened_at AT TIME ZONE tz``, so an
incident at 00:10 Beijing time counts on that day, not on the previous UTC day). Each figure is read
from the incident's *current* row, so a KPI for a past day still moves while its incidents are handled:

- ``opened``: incidents in the cohort.
- ``closed``: ``state = 'closed'`` (办结归档; a reopened incident no longer counts).
- ``false_alarms``: ``state = 'false_alarm'``.
- ``open``: every other state (received, classified, dispatched, accepted, supervised, and resolved
  still awaiting its 回访), so ``opened = closed + false_alarms + open``.
- ``closure_rate`` (办结率) = ``closed / (opened - false_alarms)``; None when that is 0.
- ``satisfaction_rate`` (满意率) = ``(satisfied + basically_satisfied) / rated``, where ``rated`` counts
  incidents whose ``satisfaction`` is one of satisfied | basically_satisfied | dissatisfied, whatever
  their state (a 不满意 rating sends the incident back to ``dispatched`` and still counts); it is the
  latest rating (a reopen clears it). None when nothing is rated.
- ``mean_accept_s`` / ``p90_accept_s``: mean and 90th percentile (``percentile_cont``, linear
  interpolation) of ``accepted_at - opened_at`` in seconds over incidents with ``accepted_at`` set
  (a 不满意 follow-up or a reopen clears it); None when none is accepted.
- ``mean_resolve_s`` / ``p90_resolve_s``: the same for ``resolved_at - opened_at`` (from opening,
  not from acceptance).
- ``overdue``: ``overdue = true`` (an SLA timer fired; the flag stays set once raised).

Incidents without a grid form their own rows (``grid`` None) when no grid filter is given.
Both queries filter on ``opened_at`` (index ``incidents_opened_at``) and, with a grid filter, on
``(grid, opened_at)`` (index ``incidents_grid``); one aggregate pass computes every figure.
:class:`KpiGauges` publishes today's figures per grid as the ``hub_kpi`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any, Final, LiteralString
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from alerts.settings import CLASSES
from hub.metrics import Metrics

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]
Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]

#: Gauge label for incidents without a grid.
UNASSIGNED: Final = "unassigned"
#: The KPIs :class:`KpiGauges` publishes.
GAUGE_KPIS: Final = ("opened", "closed", "closure_rate", "satisfaction_rate", "mean_accept_s",
                     "mean_resolve_s", "overdue")

_ACCEPT_S: LiteralString = "EXTRACT(epoch FROM accepted_at - opened_at)::float8"
_RESOLVE_S: LiteralString = "EXTRACT(epoch FROM resolved_at - opened_at)::float8"

_AGGREGATES: LiteralString = (
    "count(*)::int AS opened, "
    "count(*) FILTER (WHERE state = 'closed')::int AS closed, "
    "count(*) FILTER (WHERE state = 'false_alarm')::int AS false_alarms, "
    "count(*) FILTER (WHERE state NOT IN ('closed', 'false_alarm'))::int AS open, "
    "count(*) FILTER (WHERE state = 'closed')::float8 "
    "  / NULLIF(count(*) FILTER (WHERE state <> 'false_alarm'), 0) AS closure_rate, "
    "count(*) FILTER (WHERE satisfaction IN ('satisfied', 'basically_satisfied'))::float8 "
    "  / NULLIF(count(*) FILTER (WHERE satisfaction IN ('satisfied', 'basically_satisfied', "
    "'dissatisfied')), 0) AS satisfaction_rate, "
    "avg(" + _ACCEPT_S + ") AS mean_accept_s, "
    "percentile_cont(0.9) WITHIN GROUP (ORDER BY " + _ACCEPT_S + ") AS p90_accept_s, "
    "avg(" + _RESOLVE_S + ") AS mean_resolve_s, "
    "percentile_cont(0.9) WITHIN GROUP (ORDER BY " + _RESOLVE_S + ") AS p90_resolve_s, "
    "count(*) FILTER (WHERE overdue)::int AS overdue"
)
_PERIOD: LiteralString = "opened_at >= %(since)s AND opened_at < %(until)s"
_IN_GRIDS: LiteralString = " AND grid = ANY(%(grids)s)"
_LOCAL_DAY: LiteralString = "to_char(opened_at AT TIME ZONE %(tz)s, 'YYYY-MM-DD')"


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def aware(name: str, value: datetime) -> datetime:
    """``value`` unchanged; ValueError naming ``name`` when it has no time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value


def _params(since: datetime, until: datetime, grids: Iterable[str] | None) -> dict[str, Any]:
    return {"since": aware("since", since), "until": aware("until", until),
            "grids": None if grids is None else sorted(set(grids))}


async def _daily(conn: Conn, since: datetime, until: datetime, tz: str,
                 grids: Iterable[str] | None) -> list[dict[str, Any]]:
    params = _params(since, until, grids) | {"tz": _zone(tz).key}
    sql: LiteralString = (
        "SELECT grid, " + _LOCAL_DAY + " AS day, " + _AGGREGATES
        + " FROM incidents WHERE " + _PERIOD
    )
    if params["grids"] is not None:
        sql += _IN_GRIDS
    sql += " GROUP BY grid, day ORDER BY day, grid NULLS LAST"
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchall()


async def daily_kpis(conn: Conn, *, since: datetime, until: datetime, tz: str = "Asia/Shanghai",
                     grid: str | None = None) -> list[dict[str, Any]]:
    """One row per (grid, local day in ``tz``) for incidents opened in ``[since, until)``, ordered by
    day then grid; ``grid`` None means every grid (including incidents without one)."""
    return await _daily(conn, since, until, tz, None if grid is None else [grid])


async def summary(conn: Conn, *, since: datetime, until: datetime,
                  grids: Iterable[str] | None = None) -> dict[str, Any]:
    """The KPIs over the whole period for the incidents of ``grids`` (e.g. ``GridTree.subtree(street)``;
    None = all incidents, an empty iterable = none), plus ``by_class`` counts of every incident class."""
    params = _params(since, until, grids)
    scope: LiteralString = (
        "SELECT class, state, satisfaction, overdue, opened_at, accepted_at, resolved_at FROM incidents "
        "WHERE " + _PERIOD
    )
    if params["grids"] is not None:
        scope += _IN_GRIDS
    sql: LiteralString = (
        "WITH scope AS MATERIALIZED (" + scope + ") SELECT " + _AGGREGATES + ", "
        "(SELECT COALESCE(jsonb_object_agg(class, n), '{}'::jsonb) FROM "
        " (SELECT class, count(*) AS n FROM scope GROUP BY class) c) AS by_class FROM scope"
    )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    row["by_class"] = dict.fromkeys(CLASSES, 0) | {str(k): int(v) for k, v in row["by_class"].items()}
    return {"since": since.isoformat(), "until": until.isoformat(), "grids": params["grids"]} | row


def local_day(tz: str, now: datetime) -> tuple[datetime, datetime]:
    """``[local midnight, next local midnight)`` of the day ``now`` falls on in ``tz``."""
    zone = _zone(tz)
    day = aware("now", now).astimezone(zone).date()
    return (datetime.combine(day, time(), tzinfo=zone),
            datetime.combine(day + timedelta(days=1), time(), tzinfo=zone))


async def today(conn: Conn, *, tz: str = "Asia/Shanghai", now: datetime,
                grid_codes: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """:func:`daily_kpis` rows for the local day of ``now``: one per grid (of ``grid_codes``, when
    given) that had an incident opened today."""
    since, until = local_day(tz, now)
    return await _daily(conn, since, until, tz, grid_codes)


class KpiGauges:
    """Keeps ``hub_kpi{grid, kpi}`` at today's (local time) figures for every grid.

    Grids in ``grid_codes`` (and any grid published before) with no incident today read 0 for the
    counts; a rate or mean without data (None) has no sample rather than a stale one.
    """

    def __init__(self, metrics: Metrics, pool: Pool, *, tz: str = "Asia/Shanghai",
                 grid_codes: Iterable[str] = ()) -> None:
        self.metrics = metrics
        self.pool = pool
        self.tz = _zone(tz).key
        self.grid_codes = frozenset(grid_codes)
        self._published: set[str] = set()

    async def refresh(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Query today's rows and set the gauges; returns the rows."""
        async with self.pool.connection() as conn:
            rows = await today(conn, tz=self.tz, now=now or datetime.now(ZoneInfo(self.tz)))
        by_grid = {row["grid"] or UNASSIGNED: row for row in rows}
        for grid in sorted(self.grid_codes | self._published | by_grid.keys()):
            row = by_grid.get(grid, {"opened": 0, "closed": 0, "overdue": 0})
            for kpi in GAUGE_KPIS:
                value = row.get(kpi)
                if value is None:
                    self.metrics.kpi.remove(grid, kpi)
                else:
                    self.metrics.kpi.labels(grid=grid, kpi=kpi).set(float(value))
        self._published |= by_grid.keys()
        return rows

    async def run(self, period_s: float = 60.0) -> None:
        """Refresh every ``period_s`` seconds until cancelled; a failed refresh is logged and retried."""
        while True:
            try:
                await self.refresh()
            except (psycopg.Error, OSError):
                log.exception("KPI gauge refresh failed; retrying in %.0f s", period_s)
            await asyncio.sleep(period_s)
