"""Group-chat robots: WeCom (企业微信群机器人), DingTalk (钉钉自定义机器人), Feishu (飞书自定义机器人).

Each posts one message per notice to the robot's webhook URL; the text is
:meth:`Notice.headline` plus :meth:`Notice.lines`, with emergency incidents made to stand out.
Formats and signatures as the services document them (checked against copies of their docs):

- **WeCom** — ``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`` with
  ``{"msgtype": "markdown", "markdown": {"content": ...}}``; content at most 4096 bytes UTF-8; the
  markdown subset has ``<font color="info|comment|warning">``; reply ``{"errcode": 0, "errmsg": "ok"}``.
  Each robot may send 20 messages a minute; over that: ``45009 api freq out of limit`` (retryable).
  No signing: the key in the URL is the credential. (WeCom 群机器人配置说明,
  developer.work.weixin.qq.com/document/path/91770, as quoted on cnblogs.com/tiandi/p/17768525.html
  and blog.csdn.net/qq_31963719/article/details/107286671; 45009 text in
  github.com/WecomTeam/wecom-openclaw-plugin/issues/48.)
- **DingTalk** — ``POST https://oapi.dingtalk.com/robot/send?access_token=TOKEN`` with
  ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}`` (title is required and is what
  the phone notification shows). With 加签: ``&timestamp=<ms>&sign=<urlencode(base64(HMAC-SHA256(
  key=secret, msg=f"{timestamp}\\n{secret}")))>``, timestamp within one hour of DingTalk's clock.
  Reply ``{"errcode": 0, "errmsg": "ok"}``; ``130101 send too fast, exceed 20 times per minute`` is the
  rate limit (retryable); ``310000`` is a signature mismatch (not retryable). (DingTalk 自定义机器人安全设置,
  mirrored at apifox.com/apidoc/docs-site/467052/doc-3550006; 130101 in
  github.com/ccfos/nightingale/issues/369; 310000 in blog.gitcode.com/d6b56fabc42589ea8551ec8368b4b1ca.html.)
- **Feishu** — ``POST https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN``; we send an
  ``interactive`` card (coloured header, lark_md body, a button to the incident) — the clearest of
  text/post/card on a phone. With 签名校验 the body carries ``"timestamp"`` (seconds, as a string) and
  ``"sign": base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))`` — note the secret is in the
  *key* and the message is empty, unlike DingTalk. Reply ``{"code": 0, "msg": "success", ...}``, older
  deployments ``{"StatusCode": 0, "StatusMessage": "success"}``; ``19021 sign match fail or timestamp is
  not within one hour`` is not retryable; ``9499 too many request`` (sent with HTTP 400) and ``11232``
  are rate limits (100 a minute, 5 a second per bot), retryable. (Feishu 自定义机器人使用指南 as quoted on
  createh5.com/post/277.html, damodev.csdn.net/68230044a5baf817cf4af7cf.html and
  gantiao.com.cn/post/18861410.html; 11232 in the openclaw commit 90c787096.)

The robot token lives in the URL (query for WeCom/DingTalk, last path segment for Feishu), so
:meth:`describe` and every error text redact it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any, ClassVar

import yarl

from alerts.channels.base import Notice
from alerts.channels.http import HttpChannel

WECOM_MAX_BYTES = 4096
HIGHLIGHT_EVENTS = frozenset({"escalated", "overdue"})


def is_emergency(notice: Notice) -> bool:
    return str(notice.incident.get("class")) == "emergency"


def detail_lines(notice: Notice) -> list[str]:
    """:meth:`Notice.lines` without the link line (robots render the link their own way)."""
    link = f"查看 Open: {notice.url}"
    return [line for line in notice.lines() if not (notice.url and line == link)]


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


class WeComRobot(HttpChannel):
    """企业微信群机器人: markdown message; emergencies in the warning colour."""

    type: ClassVar[str] = "wecom"
    RATE_LIMITS: ClassVar[frozenset[int]] = frozenset({45009})

    def payload(self, notice: Notice) -> dict[str, Any]:
        head = notice.headline()
        if is_emergency(notice) or notice.event in HIGHLIGHT_EVENTS:
            head = f'<font color="warning">{head}</font>'
        parts = [f"## {head}", *(f"> {line}" for line in detail_lines(notice))]
        if notice.url:
            parts.append(f"[查看事件 Open incident]({notice.url})")
        content = _truncate_utf8("\n".join(parts), WECOM_MAX_BYTES)
        return {"msgtype": "markdown", "markdown": {"content": content}}

    async def send(self, notice: Notice) -> None:
        reply = await self.post(self.url, _dumps(self.payload(notice)), {"Content-Type": "application/json"})
        self.check_robot(reply, ("errcode",), self.RATE_LIMITS)


class DingTalkRobot(HttpChannel):
    """钉钉自定义机器人: markdown message, signed (加签) when a secret is set."""

    type: ClassVar[str] = "dingtalk"
    RATE_LIMITS: ClassVar[frozenset[int]] = frozenset({130101})

    def payload(self, notice: Notice) -> dict[str, Any]:
        head = notice.headline()
        if is_emergency(notice):
            head = f"🚨 {head}"
        parts = [f"### {head}", *(f"- {line}" for line in detail_lines(notice))]
        if notice.url:
            parts.append(f"[查看事件 Open incident]({notice.url})")
        return {"msgtype": "markdown", "markdown": {"title": head, "text": "\n\n".join(parts)}}

    def signed_url(self, timestamp_ms: int) -> yarl.URL:
        """The webhook URL with ``timestamp`` and ``sign`` appended (already percent-encoded)."""
        if not self.secret:
            return yarl.URL(self.url)
        to_sign = f"{timestamp_ms}\n{self.secret}".encode()
        digest = hmac.new(self.secret.encode(), to_sign, hashlib.sha256).digest()
        sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
        sep = "&" if "?" in self.url else "?"
        return yarl.URL(f"{self.url}{sep}timestamp={timestamp_ms}&sign={sign}", encoded=True)

    async def send(self, notice: Notice) -> None:
        url = self.signed_url(int(time.time() * 1000))
        reply = await self.post(url, _dumps(self.payload(notice)), {"Content-Type": "application/json"})
        self.check_robot(reply, ("errcode",), self.RATE_LIMITS)


class FeishuRobot(HttpChannel):
    """飞书自定义机器人: interactive card (red header for emergencies), signed when a secret is set."""

    type: ClassVar[str] = "feishu"
    hide_path_token: ClassVar[bool] = True
    RATE_LIMITS: ClassVar[frozenset[int]] = frozenset({9499, 11232})

    def payload(self, notice: Notice) -> dict[str, Any]:
        if is_emergency(notice):
            template = "red"
        elif notice.event in HIGHLIGHT_EVENTS:
            template = "orange"
        else:
            template = "blue"
        elements: list[dict[str, Any]] = [
            {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(detail_lines(notice))}}]
        if notice.url:
            elements.append({"tag": "action", "actions": [{
                "tag": "button", "type": "danger" if template == "red" else "primary",
                "text": {"tag": "plain_text", "content": "查看事件 Open incident"}, "url": notice.url}]})
        title = {"tag": "plain_text", "content": notice.headline()}
        card = {"config": {"wide_screen_mode": True}, "header": {"template": template, "title": title},
                "elements": elements}
        return {"msg_type": "interactive", "card": card}

    def signature(self, timestamp_s: int) -> dict[str, str]:
        """The ``timestamp``/``sign`` body fields (empty without a secret)."""
        if not self.secret:
            return {}
        key = f"{timestamp_s}\n{self.secret}".encode()
        sign = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return {"timestamp": str(timestamp_s), "sign": sign}

    async def send(self, notice: Notice) -> None:
        body = {**self.signature(int(time.time())), **self.payload(notice)}
        reply = await self.post(self.url, _dumps(body), {"Content-Type": "application/json"})
        self.check_robot(reply, ("code", "StatusCode"), self.RATE_LIMITS)
