"""REST part of API contract v1: health, cameras, devices, incidents and their actions."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from alerts.lifecycle import SATISFACTION
from hub.errors import Forbidden, InvalidTransition
from hub.web.auth import Unauthorized, caller_of, unauthorized
from hub.web.jsonio import json_error, json_ok
from hub.web.keys import VIEW
from hub.web.view import INCIDENT_ACTIONS, INCIDENT_CLASSES, INCIDENT_STATES

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_NOTE = 2000
routes = web.RouteTableDef()


class BadQuery(ValueError):
    """A query parameter could not be understood (HTTP 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def parse_since(raw: str, tz_name: str = "UTC") -> datetime:
    """ISO 8601 (naive = the hub's local zone) or epoch seconds → aware UTC datetime."""
    text = raw.strip()
    try:
        epoch = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch) or epoch < 0:
            raise BadQuery("since", "epoch seconds must be a finite number >= 0")
        try:
            return datetime.fromtimestamp(epoch, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise BadQuery("since", f"epoch seconds out of range: {exc}") from None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BadQuery("since", "use ISO 8601 (2025-01-31T08:00:00+08:00) or epoch seconds") from None
    if when.tzinfo is None:
        try:
            when = when.replace(tzinfo=ZoneInfo(tz_name))
        except ZoneInfoNotFoundError:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _choice(request: web.Request, param: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(param, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise BadQuery(param, f"must be one of {', '.join(allowed)}")
    return value


def parse_limit(request: web.Request) -> int:
    raw = request.query.get("limit", "").strip()
    if not raw:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery("limit", "must be an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadQuery("limit", f"must be between 1 and {MAX_LIMIT}")
    return value


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    return json_ok(request.app[VIEW].health())


@routes.get("/api/cameras")
async def cameras(request: web.Request) -> web.Response:
    return json_ok(request.app[VIEW].cameras())


@routes.get("/api/devices")
async def devices(request: web.Request) -> web.Response:
    return json_ok(request.app[VIEW].devices())


@routes.get("/api/sources")
async def sources(request: web.Request) -> web.Response:
    return json_ok(request.app[VIEW].sources())


@routes.get("/api/incidents")
async def list_incidents(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    try:
        state = _choice(request, "state", INCIDENT_STATES)
        cls = _choice(request, "class", INCIDENT_CLASSES)
        raw_since = request.query.get("since", "").strip()
        since = parse_since(raw_since, view.cfg.hub.timezone) if raw_since else None
        limit = parse_limit(request)
    except BadQuery as exc:
        return json_error(400, f"invalid query parameter '{exc.param}'", str(exc))
    grid = request.query.get("grid", "").strip() or None
    items = await view.list_incidents(state, grid, cls, since, limit, caller=caller)
    return json_ok([i for i in items if view.can_see(caller, i)])


@routes.get("/api/incidents/{incident_id}")
async def get_incident(request: web.Request) -> web.Response:
    incident_id = request.match_info["incident_id"]
    try:
        caller = caller_of(request)
    except Unauthorized as exc:
        return unauthorized(exc)
    item = await request.app[VIEW].get_incident(incident_id)
    if item is None or not request.app[VIEW].can_see(caller, item):  # another grid's: as if absent
        return json_error(404, "incident not found", {"id": incident_id})
    return json_ok(item)


@routes.post("/api/incidents/{incident_id}/actions")
async def incident_action(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    incident_id = request.match_info["incident_id"]
    try:
        caller_of(request)  # credentials first: a stranger learns nothing from body validation
    except Unauthorized as exc:
        return unauthorized(exc)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return json_error(400, "request body is not valid JSON", str(exc))
    if not isinstance(body, dict):
        return json_error(400, "request body must be a JSON object",
                          {"expected": {"action": "...", "note": "..."}})
    action = body.get("action")
    if action not in INCIDENT_ACTIONS:
        return json_error(400, "unknown action", {"action": action, "allowed": list(INCIDENT_ACTIONS)})
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        return json_error(400, "note must be a string", {"max_length": MAX_NOTE})
    satisfaction = body.get("satisfaction")
    if satisfaction is not None and satisfaction not in SATISFACTION:
        return json_error(400, "unknown satisfaction", {"allowed": list(SATISFACTION)})
    attachments = body.get("attachments", [])
    if not _attachments_ok(attachments):
        return json_error(400, "attachments must be a list of {kind, url} with urls under /evidence/",
                          {"max": MAX_ATTACHMENTS})
    actor = body.get("actor")
    if actor is not None and (not isinstance(actor, str) or not actor.strip() or len(actor) > 200):
        return json_error(400, "actor must be a non-empty string")
    try:
        caller = caller_of(request, actor)
    except Unauthorized as exc:
        return unauthorized(exc)
    found = await view.get_incident(incident_id)
    if found is None or not view.can_see(caller, found):
        return json_error(404, "incident not found", {"id": incident_id})
    try:
        updated = await view.incident_action(incident_id, str(action), caller, note=note,
                                             satisfaction=satisfaction, attachments=attachments)
    except InvalidTransition as exc:
        return json_error(409, "action not allowed in the incident's current state",
                          {"id": incident_id, "action": action, "reason": str(exc),
                           "state": exc.state, "allowed": list(exc.allowed)})
    except Forbidden as exc:
        return json_error(403, "not allowed for your role or grids", {"id": incident_id, "reason": str(exc)})
    except LookupError:
        return json_error(404, "incident not found", {"id": incident_id})
    return json_ok(updated)


MAX_ATTACHMENTS = 10


def _attachments_ok(value: object) -> bool:
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        return False
    for item in value:
        if not isinstance(item, dict) or set(item) - {"kind", "url", "name"}:
            return False
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith("/evidence/") or ".." in url:
            return False
        if not isinstance(item.get("kind", "photo"), str):
            return False
    return True
