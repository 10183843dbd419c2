"""Delivery queue in the API: jobs, the dead-letter list and retrying a dead notice.

``GET /api/dispatch/jobs?state=pending|done|dead&incident=<id>&limit=`` (newest first),
``GET /api/dispatch/dead`` (the dead-letter list), ``GET /api/dispatch/stats`` and
``POST /api/dispatch/dead/{id}/retry``. Control-room roles only (operator, duty_leader, admin).

``GET /api/kpis?since=&until=&grid=`` — the closed-loop KPIs (办结率, 满意率, time to accept/resolve,
overdue) per grid and local day (:mod:`alerts.kpis`), for any caller, limited to the caller's grids;
default: the last 7 local days.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from alerts.people import Caller
from hub.web import api
from hub.web.auth import Unauthorized, caller_of, unauthorized
from hub.web.jsonio import json_error, json_ok
from hub.web.keys import VIEW

routes = web.RouteTableDef()
ROLES = frozenset({"operator", "duty_leader", "admin"})
JOB_STATES = ("pending", "done", "dead")


def _denied(request: web.Request) -> web.Response | None:
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    if not caller.roles & ROLES:
        return json_error(403, "the delivery queue is for the control room", {"roles": sorted(ROLES)})
    return None


def _limit(request: web.Request) -> int | None:
    """``limit`` as the incident list reads it (1–1000, default 200); None when invalid."""
    try:
        return api.parse_limit(request)
    except api.BadQuery:
        return None


@routes.get("/api/dispatch/jobs")
async def jobs(request: web.Request) -> web.Response:
    if (denied := _denied(request)) is not None:
        return denied
    state = request.query.get("state") or None
    if state is not None and state not in JOB_STATES:
        return json_error(400, "invalid query parameter 'state'", f"must be one of {', '.join(JOB_STATES)}")
    limit = _limit(request)
    if limit is None:
        return json_error(400, "invalid query parameter 'limit'", "must be an integer 1..1000")
    return json_ok(await request.app[VIEW].dispatch_jobs(state, request.query.get("incident") or None, limit))


@routes.get("/api/dispatch/dead")
async def dead(request: web.Request) -> web.Response:
    if (denied := _denied(request)) is not None:
        return denied
    limit = _limit(request)
    if limit is None:
        return json_error(400, "invalid query parameter 'limit'", "must be an integer 1..1000")
    return json_ok(await request.app[VIEW].dispatch_jobs("dead", None, limit))


@routes.get("/api/dispatch/stats")
async def stats(request: web.Request) -> web.Response:
    if (denied := _denied(request)) is not None:
        return denied
    return json_ok(await request.app[VIEW].dispatch_stats())


@routes.post("/api/dispatch/dead/{job_id}/retry")
async def retry(request: web.Request) -> web.Response:
    if (denied := _denied(request)) is not None:
        return denied
    raw = request.match_info["job_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not await request.app[VIEW].retry_dead(
            int(raw)):
        return json_error(404, "no such dead job", {"id": raw})
    return json_ok({"id": int(raw), "state": "pending"})


def _period(request: web.Request) -> tuple[Caller, datetime | None, datetime | None] | web.Response:
    """The caller and the ``since``/``until`` query (the hub's zone when none is given), or the error."""
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    tz = request.app[VIEW].cfg.hub.timezone
    try:
        until = api.parse_since(request.query["until"], tz) if request.query.get("until") else None
        since = api.parse_since(request.query["since"], tz) if request.query.get("since") else None
    except api.BadQuery as exc:
        return json_error(400, "invalid query parameter 'since'/'until'", str(exc))
    return caller, since, until


@routes.get("/api/kpis/alerts")
async def alert_quality(request: web.Request) -> web.Response:
    """False alarms per alert kind and source, with the most frequent reasons (default 30 days)."""
    if isinstance(asked := _period(request), web.Response):
        return asked
    caller, since, until = asked
    return json_ok(await request.app[VIEW].alert_quality(since, until, caller))


@routes.get("/api/kpis")
async def kpis(request: web.Request) -> web.Response:
    if isinstance(asked := _period(request), web.Response):
        return asked
    caller, since, until = asked
    view = request.app[VIEW]
    grid = request.query.get("grid") or None
    rows = await view.kpis(since, until, grid)
    # a KPI row covers a whole grid: visible to whoever serves that grid (a department's members too)
    visible = [r for r in rows if view.can_see(caller, {"grid": r["grid"], "department": caller.department})]
    return json_ok(visible)
