"""Silences (maintenance windows) in the API: list, add, lift.

``GET /api/silences`` — silences not over yet (``active`` says whether they hold now), from the config
(``config:<n>``, read-only) and added at run time, limited to the caller's grids.
``POST /api/silences`` ``{grid | source, kinds?, starts?, ends, reason}`` → 201 with the silence;
``DELETE /api/silences/{id}`` → 204. Operators and admins may add and lift any silence, grid leaders
those in the grids they lead (:mod:`alerts.silence_admin`); the alert engine sees a change at once.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from alerts.reports import UnknownGrid
from hub.errors import Forbidden
from hub.web.api import BadQuery, parse_since
from hub.web.auth import Unauthorized, caller_of, unauthorized
from hub.web.jsonio import json_error, json_ok
from hub.web.keys import VIEW

routes = web.RouteTableDef()

ID = re.compile(r"^[0-9]{1,18}$")
MAX_AHEAD = timedelta(days=30)
MAX_KINDS = 50
MAX_REASON = 500
FIELDS = ("grid", "source", "kinds", "starts", "ends", "reason")
EXAMPLE = {"grid": "440106001001", "kinds": ["door_held_open"], "ends": "2026-01-31T18:00:00+08:00",
           "reason": "门禁维修 door maintenance"}


class BadSilence(ValueError):
    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.detail = detail


def _target(body: dict[str, Any]) -> tuple[str | None, str | None]:
    grid, source = body.get("grid"), body.get("source")
    if (grid is None) == (source is None):
        raise BadSilence("name exactly one of grid or source", {"example": EXAMPLE})
    for name, value in (("grid", grid), ("source", source)):
        if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 200):
            raise BadSilence(f"{name} must be a non-empty string", {"field": name})
    return (grid.strip() if grid else None), (source.strip() if source else None)


def _kinds(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_KINDS or not all(
            isinstance(k, str) and k.strip() and len(k) <= 64 for k in value):
        raise BadSilence(f"kinds must be a list of at most {MAX_KINDS} alert kinds (empty = all)",
                         {"field": "kinds", "example": ["door_held_open", "intrusion"]})
    return list(dict.fromkeys(k.strip() for k in value))


def _time(body: dict[str, Any], name: str, tz: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise BadSilence(f"{name} must be ISO 8601 or epoch seconds", {"field": name})
    try:
        return parse_since(str(value), tz)
    except BadQuery as exc:
        raise BadSilence(f"{name}: {exc}", {"field": name}) from None


def parse_silence(body: object, tz: str, now: datetime) -> dict[str, Any]:
    """The arguments of ``HubView.add_silence`` from a request body; raises :class:`BadSilence`."""
    if not isinstance(body, dict):
        raise BadSilence("request body must be a JSON object", {"example": EXAMPLE})
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadSilence("unknown fields", {"unknown": unknown, "allowed": list(FIELDS)})
    grid, source = _target(body)
    starts, ends = _time(body, "starts", tz), _time(body, "ends", tz)
    if ends is None:
        raise BadSilence("ends is required: a silence always expires", {"field": "ends"})
    if ends <= now:
        raise BadSilence("ends must be in the future", {"field": "ends", "now": now.isoformat()})
    if starts is not None and ends <= starts:
        raise BadSilence("ends must be after starts", {"field": "ends"})
    if ends > now + MAX_AHEAD:
        raise BadSilence(f"ends must be at most {MAX_AHEAD.days} days ahead",
                         {"field": "ends", "latest": (now + MAX_AHEAD).isoformat()})
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise BadSilence(f"reason must be a non-empty string of at most {MAX_REASON} characters (shown to "
                         "operators)", {"field": "reason"})
    return {"grid": grid, "source": source, "kinds": _kinds(body.get("kinds")), "starts": starts,
            "ends": ends, "reason": reason.strip()}


@routes.get("/api/silences")
async def list_silences(request: web.Request) -> web.Response:
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    return json_ok(await request.app[VIEW].silences(caller))


@routes.post("/api/silences")
async def add_silence(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    try:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadSilence("request body is not valid JSON", str(exc)) from None
        args = parse_silence(body, view.cfg.hub.timezone, datetime.now(UTC))
    except BadSilence as exc:
        return json_error(400, str(exc), exc.detail)
    try:
        silence = await view.add_silence(caller, **args)
    except UnknownGrid as exc:
        return json_error(400, "unknown grid", {"grid": exc.grid, "known": list(exc.known[:50])})
    except Forbidden as exc:
        return json_error(403, "not allowed for your role or grids", {"reason": str(exc)})
    resp = json_ok(silence, status=201)
    resp.headers["Location"] = f"/api/silences/{silence['id']}"
    return resp


@routes.delete("/api/silences/{silence_id}")
async def delete_silence(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    raw = request.match_info["silence_id"]
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    prefix, _, index = raw.partition(":")
    if prefix == "config" and ID.match(index) and int(index) < len(view.cfg.silences):
        return json_error(409, "a silence from the config cannot be lifted through the API",
                          {"id": raw, "hint": "remove it from silences: in the config file"})
    if not ID.match(raw):
        return json_error(404, "no such silence", {"id": raw})
    try:
        deleted = await view.delete_silence(caller, int(raw))
    except Forbidden as exc:
        return json_error(403, "not allowed for your role or grids", {"id": raw, "reason": str(exc)})
    if not deleted:
        return json_error(404, "no such silence", {"id": raw})
    return web.Response(status=204)
