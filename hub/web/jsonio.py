"""JSON responses and errors in one consistent shape: ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath

import numpy as np
from aiohttp import web

from hub.redact import redact_mapping


def _default(obj: object) -> object:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(data: object) -> str:
    """Serialise API data; every URL password is redacted on the way out."""
    return json.dumps(redact_mapping(data), default=_default, ensure_ascii=False, separators=(",", ":"))


def json_ok(data: object, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def json_error(status: int, error: str, detail: object = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, dumps=dumps)
