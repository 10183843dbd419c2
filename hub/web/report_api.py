"""``POST /api/incidents``: a person reports an incident by hand (a resident's call, a patrol's finding).

Body ``{kind, title, grid, class?, note?, location?: [lon, lat], attachments?, actor?}``; the incident
goes through the closed loop like any alert's (:mod:`alerts.reports`). 201 with the incident; with an
``Idempotency-Key`` header a retry returns the incident the first attempt opened (200,
``Idempotent-Replayed: true``), and 422 when the key comes back with a different kind, title or grid.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web

from alerts.reports import Report, UnknownGrid
from hub.errors import Forbidden
from hub.web.api import MAX_ATTACHMENTS, MAX_NOTE, _attachments_ok
from hub.web.auth import Unauthorized, caller_of, unauthorized
from hub.web.jsonio import json_error, json_ok
from hub.web.keys import VIEW
from hub.web.view import INCIDENT_CLASSES

routes = web.RouteTableDef()

KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TITLE = 200
MAX_KEY = 200
FIELDS = ("kind", "title", "grid", "class", "note", "location", "attachments", "actor")
EXAMPLE = {"kind": "fire_hazard", "title": "楼道堆放杂物 Corridor blocked", "grid": "440106001001"}


class BadBody(ValueError):
    """The body cannot be a report (HTTP 400)."""

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.detail = detail


def idempotency_key(request: web.Request) -> str | None:
    """The ``Idempotency-Key`` header: 1..200 printable ASCII characters, or absent."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    key = raw.strip()
    if not 1 <= len(key) <= MAX_KEY or not (key.isascii() and key.isprintable()):
        raise BadBody("Idempotency-Key must be 1 to 200 printable ASCII characters")
    return key


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise BadBody(f"{name} must be {'a non-empty' if required else 'a'} string of at most {limit} "
                      "characters", {"field": name})
    return value.strip()


def _location(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    pair: list[float] = [math.nan, math.nan]
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        pair = [float(v) for v in value]
    lon, lat = pair
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):  # NaN fails too
        raise BadBody("location must be [lon, lat] in degrees",
                      {"field": "location", "example": [113.26, 23.13]})
    return float(lon), float(lat)


def parse_report(body: object, idem_key: str | None) -> Report:
    if not isinstance(body, dict):
        raise BadBody("request body must be a JSON object", {"example": EXAMPLE})
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadBody("unknown fields", {"unknown": unknown, "allowed": list(FIELDS)})
    kind = body.get("kind")
    if not isinstance(kind, str) or not KIND.match(kind):
        raise BadBody("kind must be lower-case letters, digits and _ (at most 64), e.g. report, fire_hazard",
                      {"field": "kind"})
    title = _text(body, "title", MAX_TITLE, required=True)
    grid = _text(body, "grid", 200, required=True)
    cls = body.get("class")
    if cls is not None and cls not in INCIDENT_CLASSES:
        raise BadBody("unknown class", {"field": "class", "allowed": list(INCIDENT_CLASSES)})
    note = _text(body, "note", MAX_NOTE, required=False)
    attachments = body.get("attachments", [])
    if not _attachments_ok(attachments):
        raise BadBody("attachments must be a list of {kind, url} with urls under /evidence/",
                      {"field": "attachments", "max": MAX_ATTACHMENTS})
    actor = body.get("actor")
    if actor is not None and (not isinstance(actor, str) or not actor.strip() or len(actor) > 200):
        raise BadBody("actor must be a non-empty string", {"field": "actor"})
    return Report(kind=kind, title=title, grid=grid, cls=cls, note=note,
                  location=_location(body.get("location")), attachments=tuple(attachments), idem_key=idem_key)


@routes.post("/api/incidents")
async def report_incident(request: web.Request) -> web.Response:
    try:
        caller_of(request)  # credentials first
    except Unauthorized as exc:
        return unauthorized(exc)
    try:
        key = idempotency_key(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadBody("request body is not valid JSON", str(exc)) from None
        report = parse_report(body, key)
    except BadBody as exc:
        return json_error(400, str(exc), exc.detail)
    try:
        caller = caller_of(request, body.get("actor"))
    except Unauthorized as exc:
        return unauthorized(exc)
    try:
        incident, created = await request.app[VIEW].report_incident(caller, report)
    except UnknownGrid as exc:
        return json_error(400, "unknown grid", {"grid": exc.grid, "known": list(exc.known[:50])})
    except Forbidden as exc:
        return json_error(403, "not allowed for your role or grids",
                          {"grid": report.grid, "reason": str(exc)})
    if not created and (incident["kind"], incident["title"], incident["grid"]) != (
            report.kind, report.title, report.grid):
        return json_error(422, "Idempotency-Key already used for a different report",
                          {"id": incident["id"], "kind": incident["kind"], "title": incident["title"],
                           "grid": incident["grid"]})
    resp = json_ok(incident, status=201 if created else 200)
    resp.headers["Location"] = f"/api/incidents/{incident['id']}"
    if not created:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp
