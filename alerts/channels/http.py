"""Shared HTTP plumbing for the webhook and robot channels.

One :class:`aiohttp.ClientSession` per channel, created lazily inside the running loop, a total
timeout per request, and one mapping from what the peer did to :class:`~hub.errors.DeliveryError`:

- network errors, timeouts, HTTP 5xx, 408 and 429 → ``retryable=True`` (``retry_after_s`` from a
  ``Retry-After`` header, in seconds or as an HTTP date);
- any other 3xx/4xx → ``retryable=False`` (redirects are not followed: fix the URL);
- a robot's JSON error code → retryable only when it is that service's rate limit.

Robot URLs carry their access token in the query string (WeCom ``key``, DingTalk
``access_token``) or the last path segment (Feishu ``/hook/<token>``), so :meth:`HttpChannel.describe`
shows ``scheme://host[:port]/path`` only, and every error text passes through :meth:`HttpChannel.scrub`.
"""

from __future__ import annotations

import builtins
import email.utils
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import yarl

from alerts.channels.base import Channel
from hub.errors import ConfigError, DeliveryError

log = logging.getLogger(__name__)

USER_AGENT = "sanwang-hub/0.1"
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What the peer answered: status, its ``Retry-After`` hint and the raw body."""

    status: int
    retry_after: str | None
    body: bytes

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact_url(url: str | yarl.URL, *, hide_last_segment: bool = False) -> str:
    """``scheme://host[:port]/path`` without user info, query or fragment (optionally hide a path token)."""
    u = yarl.URL(url) if isinstance(url, str) else url
    path = u.path
    if hide_last_segment and u.name:
        path = path[: -len(u.name)] + "***"
    host = u.host or ""
    port = f":{u.port}" if u.explicit_port is not None else ""
    return f"{u.scheme}://{host}{port}{path}"


class HttpChannel(Channel):
    """Base of the HTTP channels: session, timeout, error mapping, redaction."""

    type: ClassVar[str] = "http"
    hide_path_token: ClassVar[bool] = False  # True where the path's last segment is a credential

    def __init__(self, url: str, secret: str | None = None, *, timeout_s: float = 10.0,
                 name: str = "") -> None:
        try:
            parsed = yarl.URL(url)
        except (TypeError, ValueError) as exc:
            raise ConfigError("not a URL", field="url") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"{self.type} channel needs an http(s) URL with a host", field="url",
                              hint="e.g. https://example.org/hooks/sanwang")
        if timeout_s <= 0:
            raise ConfigError("timeout_s must be positive", field="timeout_s")
        self.url = url
        self.secret = secret or None
        self.timeout_s = timeout_s
        self.name = name
        self._session: aiohttp.ClientSession | None = None
        # Everything that must never show up in a log line or an error text.
        hidden = [url, parsed.raw_query_string, parsed.query_string, *parsed.query.values()]
        if self.hide_path_token and parsed.name:
            hidden.append(parsed.name)
        if self.secret:
            hidden.append(self.secret)
        self._hidden = sorted({h for h in hidden if len(h) >= 4}, key=len, reverse=True)

    def describe(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"{self.type}{label} {redact_url(self.url, hide_last_segment=self.hide_path_token)}"

    def scrub(self, text: str) -> str:
        """``text`` with the URL's query/token and the secret replaced by ``***``."""
        for h in self._hidden:
            text = text.replace(h, "***")
        return text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers={"User-Agent": USER_AGENT})
        return self._session

    def fail(self, reason: str, *, retryable: bool, status: int | None = None,
             retry_after_s: float | None = None) -> DeliveryError:
        """Build (and log) the DeliveryError for this channel with a scrubbed message."""
        message = self.scrub(f"{self.describe()}: {reason}")
        log.info("delivery failed (%s): %s", "will retry" if retryable else "dead-letter", message)
        return DeliveryError(message, retryable=retryable, retry_after_s=retry_after_s, status=status)

    async def post(self, url: str | yarl.URL, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        """POST ``body``; network failures and timeouts raise a retryable DeliveryError."""
        try:
            async with self._client().post(url, data=body, headers=dict(headers),
                                           allow_redirects=False) as resp:
                raw = await resp.read()
                return HttpReply(resp.status, resp.headers.get("Retry-After"), raw)
        except TimeoutError as exc:
            raise self.fail(f"timed out after {self.timeout_s:g} s", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise self.fail(f"network error: {type(exc).__name__}: {exc}", retryable=True) from exc

    def check_status(self, reply: HttpReply) -> None:
        """Raise for anything but 2xx: 5xx/408/429 retryable (with Retry-After), other codes not."""
        status = reply.status
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in RETRYABLE_STATUS
        snippet = self.scrub(reply.body[:200].decode("utf-8", "replace")).strip()
        retry_after = parse_retry_after(reply.retry_after) if retryable else None
        raise self.fail(f"HTTP {status}" + (f": {snippet}" if snippet else ""), retryable=retryable,
                        status=status, retry_after_s=retry_after)

    def check_robot(self, reply: HttpReply, code_keys: Iterable[str],
                    rate_limit_codes: frozenset[int]) -> None:
        """Check a robot's answer: HTTP-level retryables first, then its JSON error code.

        Robots answer errors as JSON (often with HTTP 200, Feishu sometimes with 400); the first of
        ``code_keys`` present in the body is the result code, 0 meaning delivered.
        """
        if reply.status >= 500 or reply.status in RETRYABLE_STATUS:
            self.check_status(reply)
        data = reply.json() or {}
        code = next((data[k] for k in code_keys if k in data), None)
        if isinstance(code, int) and not isinstance(code, bool):
            if code == 0 and 200 <= reply.status < 300:
                log.debug("delivered via %s", self.describe())
                return
            if code != 0:
                msg = str(data.get("errmsg") or data.get("msg") or data.get("StatusMessage") or "")
                raise self.fail(f"robot error {code}: {msg}", retryable=code in rate_limit_codes,
                                status=reply.status, retry_after_s=parse_retry_after(reply.retry_after))
        self.check_status(reply)
        raise self.fail(f"unexpected reply (HTTP {reply.status}, no result code)", retryable=False,
                        status=reply.status)


def make_http_channel(type: str, url: str, secret: str | None, **kw: Any) -> Channel:
    """Build the HTTP channel for ``type`` (webhook, wecom, dingtalk, feishu)."""
    from alerts.channels.robots import DingTalkRobot, FeishuRobot, WeComRobot
    from alerts.channels.webhook import WebhookChannel

    kinds: dict[str, builtins.type[HttpChannel]] = {
        c.type: c for c in (WebhookChannel, WeComRobot, DingTalkRobot, FeishuRobot)}
    cls = kinds.get(type)
    if cls is None:
        raise ConfigError(f"unknown HTTP channel type {type!r}", field="type", hint=", ".join(sorted(kinds)))
    return cls(url, secret, **kw)
