"""Generic webhook channel: POST each notice as JSON to an integrator's URL, signed with HMAC.

What a receiver gets (this is the contract integrators implement)::

    POST <url>
    Content-Type: application/json
    X-Sanwang-Key: <notice.key>          idempotency key: same across retries and restarts
    X-Sanwang-Event: <notice.event>      opened | assigned | escalated | overdue | updated | transition
    X-Sanwang-Timestamp: <unix seconds>  when this attempt was signed
    X-Sanwang-Signature: sha256=<hex>    only when a secret is configured

    {"key", "event", "incident", "state", "action", "actor", "note", "at", "level", "recipient", "url"}

Signature: ``hex(HMAC-SHA256(key=secret, msg=f"{timestamp}.".encode() + raw_body))`` over the exact
body bytes received (verify before parsing JSON). Receivers should

1. recompute it and compare in constant time (``hmac.compare_digest``);
2. reject timestamps more than a few minutes from their clock (replay protection; 300 s here);
3. drop duplicates by ``X-Sanwang-Key`` (delivery is at least once) and still answer 2xx;
4. answer 2xx when stored; 408/429/5xx (optionally with ``Retry-After``) to have it retried later;
   any other 4xx dead-letters the notice.

:func:`verify_signature` does steps 1-2 and is what our tests and Python receivers use. The signed
string (timestamp + "." + body, hex HMAC-SHA256) is the one Stripe's webhooks use, so most web
frameworks already have receiver code for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import ClassVar

from alerts.channels.base import Notice
from alerts.channels.http import HttpChannel

log = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Sanwang-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str, timestamp: str | int, body: bytes, header: str | None, *,
                     tolerance_s: float = 300, now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` and ``timestamp`` is recent enough."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), header.strip().encode())


class WebhookChannel(HttpChannel):
    """POST notices as JSON to one URL, with idempotency key and optional HMAC signature."""

    type: ClassVar[str] = "webhook"

    async def send(self, notice: Notice) -> None:
        body = json.dumps(notice.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Sanwang-Key": notice.key,
            "X-Sanwang-Event": notice.event,
            "X-Sanwang-Timestamp": str(timestamp),
        }
        if self.secret:
            headers["X-Sanwang-Signature"] = sign(self.secret, timestamp, body)
        reply = await self.post(self.url, body, headers)
        self.check_status(reply)
        log.debug("delivered %s via %s (HTTP %d)", notice.key, self.describe(), reply.status)
