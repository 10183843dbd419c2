"""Who is calling: ``Authorization: Bearer <token>`` → the person owning the token (``people:``).

Without a token the caller is the control room's operator (``http.anonymous: operator``, the
default for a hub on a control-room LAN) or the request is refused (``http.anonymous: none``). The
console may name who sits at it (body ``actor``), but never a person who has a token.
A wrong token is always refused: 401 with ``WWW-Authenticate: Bearer``. Tokens are never logged.
"""

from __future__ import annotations

import dataclasses
import hmac

from aiohttp import web

from alerts.people import Caller
from hub.web.jsonio import json_error
from hub.web.keys import VIEW


class Unauthorized(Exception):
    """No acceptable credentials (HTTP 401)."""


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if not hmac.compare_digest(scheme.lower().encode(), b"bearer") or not token.strip():
        raise Unauthorized("use Authorization: Bearer <token>")
    return token.strip()


def caller_of(request: web.Request, acting_as: object = None) -> Caller:
    """The caller; ``acting_as`` (the body's ``actor``) names the operator at the control room."""
    token = bearer(request)
    caller = request.app[VIEW].caller(token)
    if caller is None:
        raise Unauthorized("unknown token" if token else "a bearer token is required")
    if token is None and isinstance(acting_as, str) and acting_as.strip():
        actor = acting_as.strip()[:200]
        if request.app[VIEW].holds_token(actor):  # nobody signs as a person who has credentials
            raise Unauthorized(f"{actor} has an API token: send it as Authorization: Bearer")
        caller = dataclasses.replace(caller, id=actor)
    return caller


def unauthorized(exc: Unauthorized) -> web.Response:
    resp = json_error(401, "unauthorized", str(exc))
    resp.headers["WWW-Authenticate"] = 'Bearer realm="sanwang-hub"'
    return resp
