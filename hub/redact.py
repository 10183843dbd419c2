"""Keep secrets out of logs, API output and diagnostics."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEYS = re.compile(r"(pass(word)?|pwd|secret|token|api[_-]?key|authorization)", re.IGNORECASE)
# user-info runs to the LAST '@' before the path: passwords may contain a raw '@'
_URL_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^/\s:@]+)(:[^/\s]*)?@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with any user-info password replaced by ``***``.

    >>> redact_url("rtsp://admin:s3cret@10.0.0.5:554/stream1")
    'rtsp://admin:***@10.0.0.5:554/stream1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # as written (a bad port must not make redaction fail)
    user = parts.username or ""
    netloc = f"{user}:***@{host}" if parts.password is not None else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact passwords in every URL found inside free text (error messages, ffmpeg logs)."""
    return _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{':***' if m.group(3) else ''}@", text)


def redact_mapping(data: object) -> object:
    """Deep-copy ``data`` with secret-looking keys and URL passwords redacted."""
    if isinstance(data, dict):
        out: dict[object, object] = {}
        for key, value in data.items():
            if isinstance(key, str) and _SECRET_KEYS.search(key) and value not in (None, ""):
                out[key] = "***"
            else:
                out[key] = redact_mapping(value)
        return out
    if isinstance(data, list):
        return [redact_mapping(v) for v in data]
    if isinstance(data, str) and "://" in data:
        return redact_text(data)
    return data
