"""``GET /api/openapi.json``: the API contract v1 as an OpenAPI 3.1 document.

Paths come from the app's own router (so a route cannot be missing from the document — a test
checks it); their summaries, parameters and response schemas are declared here beside the shapes
of docs/api.md.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alerts.lifecycle import PEOPLE_ACTIONS, SATISFACTION, STATES
from alerts.settings import CLASSES
from hub.web.jsonio import json_ok

_STR = {"type": "string"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_ARR = {"type": "array", "items": {"type": "object"}}

_ATTACHMENTS = {
    "type": "array",
    "maxItems": 10,
    "items": {
        "type": "object",
        "properties": {"kind": _STR, "url": {"type": "string", "pattern": "^/evidence/"}, "name": _STR},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _STR, "detail": {}}},
    "Incident": {
        "type": "object",
        "required": [
            "id",
            "class",
            "state",
            "grid",
            "title",
            "opened_at",
            "updated_at",
            "sources",
            "evidence",
        ],
        "properties": {
            "id": _STR,
            "class": {"enum": list(CLASSES)},
            "state": {"enum": list(STATES)},
            "grid": {"type": ["string", "null"]},
            "title": _STR,
            "kind": _STR,
            "count": {"type": "integer"},
            "opened_at": _TIME,
            "updated_at": _TIME,
            "last_seen": _TIME,
            "sources": _ARR,
            "evidence": _ARR,
            "department": _STR,
            "level": {"type": "integer", "minimum": 0, "maximum": 2},
            "overdue": {"type": "boolean"},
            "assignee": {"type": ["string", "null"]},
            "satisfaction": {"enum": [*SATISFACTION, None]},
            "accept_due": _TIME,
            "resolve_due": _TIME,
            "dispatched_at": _TIME,
            "accepted_at": _TIME,
            "arrived_at": _TIME,
            "resolved_at": _TIME,
            "closed_at": _TIME,
            "history": {"type": "array", "items": _ref("Transition")},
        },
    },
    "Transition": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "state": {"enum": list(STATES)},
            "from": {"type": ["string", "null"]},
            "action": {"type": ["string", "null"]},
            "actor": _STR,
            "at": _TIME,
            "note": _STR,
            "level": {"type": "integer"},
            "attachments": _ARR,
        },
    },
    "Action": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "action": {"enum": list(PEOPLE_ACTIONS)},
            "note": {"type": "string", "maxLength": 2000},
            "satisfaction": {"enum": list(SATISFACTION)},
            "actor": _STR,
            "attachments": _ATTACHMENTS,
        },
    },
    "Report": {
        "type": "object",
        "required": ["kind", "title", "grid"],
        "additionalProperties": False,
        "properties": {
            "kind": {
                "type": "string",
                "pattern": "^[a-z][a-z0-9_]{0,63}$",
                "examples": ["report", "fire_hazard"],
            },
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "grid": {"type": "string", "description": "a known grid within the caller's grids"},
            "class": {"enum": list(CLASSES), "description": "default: by dispatch.rules for kind"},
            "note": {"type": "string", "maxLength": 2000},
            "location": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
                "description": "[lon, lat]",
            },
            "attachments": _ATTACHMENTS,
            "actor": {
                "type": "string",
                "description": "the operator's name when the control room calls without a token",
            },
        },
    },
    "Silence": {
        "type": "object",
        "properties": {
            "id": {"type": ["integer", "string"], "description": "config ones: config:<n>"},
            "grid": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
            "kinds": {"type": "array", "items": _STR},
            "starts_at": _TIME,
            "ends_at": _TIME,
            "reason": _STR,
            "created_by": _STR,
            "active": {"type": "boolean"},
        },
    },
    "NewSilence": {
        "type": "object",
        "required": ["ends", "reason"],
        "additionalProperties": False,
        "description": "exactly one of grid or source",
        "properties": {
            "grid": _STR,
            "source": {"type": "string", "description": "camera or device id"},
            "kinds": {"type": "array", "items": _STR, "maxItems": 50, "description": "empty = every kind"},
            "starts": {"type": "string", "format": "date-time", "description": "default now"},
            "ends": {"type": "string", "format": "date-time", "description": "future, at most 30 days ahead"},
            "reason": {"type": "string", "minLength": 1, "maxLength": 500},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "key": _STR,
            "queue": _STR,
            "incident_id": _STR,
            "channel": {"type": "object"},
            "event": _STR,
            "recipient": {"type": "object"},
            "state": {"enum": ["pending", "done", "dead"]},
            "attempts": {"type": "integer"},
            "last_error": _STR,
            "created_at": _TIME,
            "done_at": _TIME,
            "next_at": _TIME,
        },
    },
    "Kpi": {
        "type": "object",
        "properties": {
            "grid": {"type": ["string", "null"]},
            "day": {"type": "string", "format": "date"},
            **{k: {"type": "integer"} for k in ("opened", "closed", "false_alarms", "open", "overdue")},
            **{
                k: {"type": ["number", "null"]}
                for k in (
                    "closure_rate",
                    "satisfaction_rate",
                    "mean_accept_s",
                    "p90_accept_s",
                    "mean_resolve_s",
                    "p90_resolve_s",
                )
            },
        },
    },
}

_Q = "query"


def _param(
    name: str, where: str = _Q, schema: dict[str, Any] | None = None, desc: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or _STR,
        "description": desc,
    }


def _json(schema: dict[str, Any], desc: str = "OK") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


_LIST = {"type": "array", "items": {"type": "object"}}
#: (method, path) → summary, parameters, success schema, extra
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/health"): {"summary": "Health: ok or degraded, per component", "ok": {"type": "object"}},
    ("GET", "/api/cameras"): {"summary": "Cameras with status and stats", "ok": _LIST},
    ("GET", "/api/devices"): {"summary": "Locks and door sensors with status", "ok": _LIST},
    ("GET", "/api/sources"): {"summary": "Every adapter, credentials redacted", "ok": _LIST},
    ("GET", "/api/incidents"): {
        "summary": "Incidents in the caller's grids, newest first",
        "params": [
            _param("state", schema={"enum": list(STATES)}),
            _param("grid"),
            _param("class", schema={"enum": list(CLASSES)}),
            _param("since", desc="ISO 8601 or epoch seconds; filters updated_at"),
            _param("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
        ],
        "ok": {"type": "array", "items": _ref("Incident")},
    },
    ("GET", "/api/incidents/{incident_id}"): {
        "summary": "One incident with its history",
        "params": [_param("incident_id", "path")],
        "ok": _ref("Incident"),
    },
    ("POST", "/api/incidents/{incident_id}/actions"): {
        "summary": "Act on an incident (state machine, role and grid checked)",
        "params": [_param("incident_id", "path")],
        "body": _ref("Action"),
        "ok": _ref("Incident"),
        "errors": {
            "400": "bad body",
            "401": "bad token",
            "403": "role may not",
            "404": "unknown or another grid's",
            "409": "not allowed from the current state",
        },
    },
    ("POST", "/api/incidents"): {
        "summary": "Report an incident by hand (a resident's call, a patrol's finding); it is classified and "
        "dispatched like any alert's",
        "params": [
            _param(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": 200},
                "a retry with the same key returns the first attempt's incident (200) instead of a second",
            ),
        ],
        "body": _ref("Report"),
        "success": {"201": "opened", "200": "replayed: opened before with this Idempotency-Key"},
        "ok": _ref("Incident"),
        "errors": {
            "400": "bad body, header or unknown grid",
            "401": "bad token",
            "403": "role may not report, or grid outside the caller's",
            "422": "Idempotency-Key used before for a different report",
        },
    },
    ("GET", "/api/silences"): {
        "summary": "Silences not over yet (config and run-time) in the caller's grids",
        "ok": {"type": "array", "items": _ref("Silence")},
    },
    ("POST", "/api/silences"): {
        "summary": "Silence a grid (and below) or a source until ends (operator, admin, grid leader)",
        "body": _ref("NewSilence"),
        "success": {"201": "added"},
        "ok": _ref("Silence"),
        "errors": {"400": "bad body or unknown grid", "401": "bad token", "403": "role or grid may not"},
    },
    ("DELETE", "/api/silences/{silence_id}"): {
        "summary": "Lift a silence added at run time",
        "params": [_param("silence_id", "path")],
        "success": {"204": "lifted"},
        "errors": {
            "401": "bad token",
            "403": "role or grid may not",
            "404": "no such silence",
            "409": "a config silence (edit the config)",
        },
    },
    ("GET", "/api/kpis/alerts"): {
        "summary": "Alert quality: false alarms per alert kind and source, with the top reasons",
        "params": [_param("since"), _param("until")],
        "ok": {"type": "array", "items": {"type": "object", "properties": {
            "kind": _STR, "source_type": _STR, "source_id": _STR, "incidents": {"type": "integer"},
            "false_alarms": {"type": "integer"}, "false_alarm_rate": {"type": "number"},
            "reasons": {"type": "array", "items": {"type": "object"}}}}},
    },
    ("GET", "/api/kpis"): {
        "summary": "办结率, 满意率, times, overdue per grid and local day",
        "params": [_param("since"), _param("until"), _param("grid")],
        "ok": {"type": "array", "items": _ref("Kpi")},
    },
    ("GET", "/api/dispatch/jobs"): {
        "summary": "Delivery jobs (control room)",
        "params": [
            _param("state", schema={"enum": ["pending", "done", "dead"]}),
            _param("incident"),
            _param("limit"),
        ],
        "ok": {"type": "array", "items": _ref("Job")},
    },
    ("GET", "/api/dispatch/dead"): {
        "summary": "The dead-letter list",
        "params": [_param("limit")],
        "ok": {"type": "array", "items": _ref("Job")},
    },
    ("GET", "/api/dispatch/stats"): {"summary": "Jobs per state", "ok": {"type": "object"}},
    ("POST", "/api/dispatch/dead/{job_id}/retry"): {
        "summary": "Queue a dead notice again",
        "params": [_param("job_id", "path")],
        "ok": {"type": "object"},
    },
    ("GET", "/api/cameras/{camera_id}/snapshot.jpg"): {
        "summary": "Latest analysed frame with boxes",
        "params": [_param("camera_id", "path")],
        "image": "image/jpeg",
    },
    ("GET", "/api/cameras/{camera_id}/live.mjpeg"): {
        "summary": "Live view (multipart MJPEG)",
        "params": [_param("camera_id", "path")],
        "image": "multipart/x-mixed-replace",
    },
    ("GET", "/api/openapi.json"): {"summary": "This document", "ok": {"type": "object"}},
}


def api_paths(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every ``/api`` route the app serves."""
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if (
            isinstance(path, str)
            and path.startswith("/api/")
            and route.method in ("GET", "POST", "DELETE", "PUT")
        ):
            out.add((route.method, path))
    return out


def document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(api_paths(app)):
        op = OPERATIONS.get((method, path), {"summary": path, "ok": {}})
        responses: dict[str, Any] = {}
        if "image" in op:
            responses["200"] = {"description": "OK", "content": {op["image"]: {}}}
        else:
            for code, desc in op.get("success", {"200": "OK"}).items():
                responses[code] = {"description": desc} if code == "204" else _json(op["ok"], desc)
        for code, desc in op.get("errors", {"400": "bad request", "401": "bad token"}).items():
            responses[code] = _json(_ref("Error"), desc)
        entry: dict[str, Any] = {
            "summary": op["summary"],
            "parameters": op.get("params", []),
            "responses": responses,
        }
        if "body" in op:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": op["body"]}}}
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sanwang-hub API",
            "version": "1",
            "description": "API contract v1 (docs/api.md). WebSocket: /ws/events; MQTT out: "
            "sanwang/<grid_code>/incidents (QoS 1).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "people: token: in the config"}
            },
        },
        "paths": paths,
    }


async def openapi(request: web.Request) -> web.Response:
    return json_ok(document(request.app))
