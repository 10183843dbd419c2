"""HTTP delivery channels against a real local aiohttp server emulating each receiver.

The generic receiver checks signatures with ``verify_signature`` and dedups by ``X-Sanwang-Key``; the
WeCom / DingTalk / Feishu emulators check the body shape and recompute the signatures here, the way
the real services document them, and answer in their JSON formats (errors included).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from aiohttp import web

from alerts.channels.base import Notice
from alerts.channels.http import HttpChannel, make_http_channel
from alerts.channels.robots import DingTalkRobot, FeishuRobot, WeComRobot
from alerts.channels.webhook import WebhookChannel, verify_signature
from hub.errors import ConfigError, DeliveryError

SECRET = "whsec-9f8e7d6c5b4a"
WECOM_KEY = "693a91f6-7abc-4bc4-97a0-0ec2f1fa5aaa"
DING_TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DING_SECRET = "SECd1n9t4lks3cr3tv4lu3"
FEISHU_TOKEN = "2c3d4e5f-aaaa-bbbb-cccc-feishutoken"
FEISHU_SECRET = "fe1shu-s1gn-s3cr3t"
C = TypeVar("C", bound=HttpChannel)
ALL_SECRETS = (SECRET, WECOM_KEY, DING_TOKEN, DING_SECRET, FEISHU_TOKEN, FEISHU_SECRET)
FEISHU_SIGN_FAIL = {"code": 19021, "data": {},
                    "msg": "sign match fail or timestamp is not within one hour from current time"}


def notice(cls: str = "emergency", key: str = "inc-7:opened:0", **kw: Any) -> Notice:
    incident = {"id": "inc-7", "class": cls, "state": "dispatched", "grid": "440105001001",
                "title": "3号楼单元门被强行打开"}
    return Notice(key=key, event=kw.pop("event", "opened"), incident=incident, state="dispatched",
                  at="2025-05-01T08:00:00+08:00", recipient={"id": "u1", "name": "张网格员"},
                  url=kw.pop("url", "https://hub.example/incidents/inc-7"), **kw)


class Peer:
    """The receivers: generic webhook, WeCom, DingTalk, Feishu, and misbehaving endpoints."""

    def __init__(self) -> None:
        self.base = ""
        self.stored: dict[str, dict[str, Any]] = {}
        self.webhook_hits: list[dict[str, str]] = []
        self.robot_bodies: list[tuple[str, dict[str, Any], str]] = []
        self.channels: list[HttpChannel] = []
        self.release = asyncio.Event()  # set at teardown so the slow handler ends at once

    def make(self, cls: type[C], path: str, secret: str | None = None, **kw: Any) -> C:
        channel = cls(self.base + path, secret, **kw)
        self.channels.append(channel)
        return channel

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        app.router.add_post("/status/{code}", self.status)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/cgi-bin/webhook/send", self.wecom)
        app.router.add_post("/robot/send", self.dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self.feishu)
        return app

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        if not verify_signature(SECRET, h.get("X-Sanwang-Timestamp", ""), body, h.get("X-Sanwang-Signature")):
            return web.json_response({"error": "bad signature"}, status=401)
        self.webhook_hits.append(dict(h))
        key = h["X-Sanwang-Key"]
        if key in self.stored:
            return web.json_response({"duplicate": True})
        self.stored[key] = json.loads(body)
        return web.json_response({"stored": True}, status=201)

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {}
        if code == 429:
            headers["Retry-After"] = "7"
        elif code == 503:
            headers["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
        return web.Response(status=code, text="nope", headers=headers)

    async def slow(self, request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), 3)
        return web.Response(text="late")

    async def wecom(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        if key == "busy":
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        if key != WECOM_KEY:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        data = await request.json()
        md = data.get("markdown", {})
        if set(data) != {"msgtype", "markdown"} or data["msgtype"] != "markdown" or set(md) != {"content"} \
                or len(md["content"].encode()) > 4096:
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        self.robot_bodies.append(("wecom", data, request.query_string))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def dingtalk(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token")
        if token == "busy":
            too_fast = "send too fast, exceed 20 times per minute"
            return web.json_response({"errcode": 130101, "errmsg": too_fast})
        if token != DING_TOKEN:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        if "sign" in request.query or request.query.get("signed") == "required":
            ts = request.query.get("timestamp", "0")
            digest = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
            expected = urllib.parse.quote_plus(base64.b64encode(digest).decode())
            fresh = abs(time.time() * 1000 - int(ts)) < 3600_000
            wire = urllib.parse.urlsplit(request.raw_path).query.split("&")  # exactly as sent
            if not fresh or f"sign={expected}" not in wire:
                return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        data = await request.json()
        md = data.get("markdown", {})
        if data.get("msgtype") != "markdown" or not md.get("title") or not isinstance(md.get("text"), str):
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 json"})
        self.robot_bodies.append(("dingtalk", data, request.query_string))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def feishu(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token == "busy":
            return web.json_response({"code": 9499, "msg": "too many request", "data": {}}, status=400)
        if token == "legacy":
            return web.json_response({"Extra": None, "StatusCode": 0, "StatusMessage": "success"})
        if token != FEISHU_TOKEN:
            invalid = "param invalid: incoming webhook access token invalid"
            return web.json_response({"code": 19001, "msg": invalid, "data": {}})
        data = await request.json()
        ts = data.get("timestamp")
        key = f"{ts}\n{FEISHU_SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if not isinstance(ts, str) or abs(time.time() - int(ts)) > 3600 or data.get("sign") != expected:
            return web.json_response(FEISHU_SIGN_FAIL)
        card = data.get("card", {})
        if data.get("msg_type") != "interactive" or card["header"]["title"]["tag"] != "plain_text":
            return web.json_response({"code": 9499, "msg": "Bad Request", "data": {}}, status=400)
        self.robot_bodies.append(("feishu", data, request.query_string))
        return web.json_response({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {},
                                  "msg": "success"})


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    runner = web.AppRunner(p.app(), access_log=None)  # the access log would print robot keys
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield p
    p.release.set()
    for channel in p.channels:
        await channel.close()
    await runner.cleanup()


async def failure(channel: HttpChannel, n: Notice | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await channel.send(n or notice())
    return info.value


async def test_webhook_delivers_signed_json_and_receiver_dedups(peer: Peer) -> None:
    channel = peer.make(WebhookChannel, "/hook", SECRET, name="ops")
    n = notice()
    await channel.send(n)
    await channel.send(n)  # an at-least-once retry: same key
    assert list(peer.stored) == [n.key]
    assert peer.stored[n.key] == n.to_json()
    assert Notice.from_json(peer.stored[n.key]) == n
    assert [h["X-Sanwang-Key"] for h in peer.webhook_hits] == [n.key, n.key]
    h = peer.webhook_hits[0]
    assert h["Content-Type"] == "application/json"
    assert h["X-Sanwang-Event"] == "opened"
    assert abs(int(h["X-Sanwang-Timestamp"]) - time.time()) < 5
    assert h["X-Sanwang-Signature"].startswith("sha256=")


async def test_webhook_wrong_secret_is_not_retryable(peer: Peer) -> None:
    err = await failure(peer.make(WebhookChannel, "/hook", "not-the-secret"))
    assert (err.retryable, err.status) == (False, 401)
    unsigned = await failure(peer.make(WebhookChannel, "/hook"))
    assert (unsigned.retryable, unsigned.status) == (False, 401)


def test_verify_signature() -> None:
    body = b'{"key":"k"}'
    ts = 1_700_000_000
    header = "sha256=" + hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert verify_signature(SECRET, str(ts), body, header, now=ts + 10)
    assert verify_signature(SECRET, ts, body, header, now=ts - 299)
    assert not verify_signature(SECRET, ts, body, header, now=ts + 301)  # stale: replay
    assert verify_signature(SECRET, ts, body, header, tolerance_s=3600, now=ts + 301)
    assert not verify_signature(SECRET, ts, body + b" ", header, now=ts)
    assert not verify_signature("other", ts, body, header, now=ts)
    assert not verify_signature(SECRET, ts + 1, body, header, now=ts)
    assert not verify_signature(SECRET, ts, body, header.removeprefix("sha256="), now=ts)
    assert not verify_signature(SECRET, "yesterday", body, header, now=ts)
    assert not verify_signature(SECRET, ts, body, None, now=ts)


@pytest.mark.parametrize(("code", "retryable", "retry_after"), [
    (500, True, None), (503, True, 30.0), (408, True, None), (429, True, 7.0),
    (404, False, None), (400, False, None), (301, False, None)])
async def test_http_status_mapping(peer: Peer, code: int, retryable: bool, retry_after: float | None) -> None:
    err = await failure(peer.make(WebhookChannel, f"/status/{code}", SECRET))
    assert (err.retryable, err.status) == (retryable, code)
    if retry_after is None:
        assert err.retry_after_s is None
    else:
        assert err.retry_after_s == pytest.approx(retry_after, abs=2)


async def test_closed_port_and_slow_server_are_retryable(peer: Peer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = WebhookChannel(f"http://127.0.0.1:{port}/hook", SECRET)
    try:
        err = await failure(closed)
    finally:
        await closed.close()
    assert err.retryable and err.status is None
    t0 = time.monotonic()
    slow = await failure(peer.make(WebhookChannel, "/slow", timeout_s=0.3))
    assert slow.retryable and "timed out" in str(slow)
    assert time.monotonic() - t0 < 2


async def test_wecom_markdown_and_errors(peer: Peer) -> None:
    robot = peer.make(WeComRobot, f"/cgi-bin/webhook/send?key={WECOM_KEY}")
    await robot.send(notice("emergency"))
    await robot.send(notice("general", key="k2"))
    (_, first, query), (_, second, _) = peer.robot_bodies
    assert query == f"key={WECOM_KEY}"
    content = first["markdown"]["content"]
    assert content.startswith(
        '## <font color="warning">【应急事件】新事件 New incident: 3号楼单元门被强行打开</font>')
    assert "> 网格 Grid: 440105001001" in content
    assert "[查看事件 Open incident](https://hub.example/incidents/inc-7)" in content
    assert second["markdown"]["content"].startswith("## 【一般事件】")
    long_note = notice(note="很长的备注" * 400)
    await robot.send(long_note)  # truncated to the 4096-byte limit, so the emulator accepts it
    busy = await failure(peer.make(WeComRobot, "/cgi-bin/webhook/send?key=busy"))
    assert busy.retryable and "45009" in str(busy)
    bad_key = await failure(peer.make(WeComRobot, "/cgi-bin/webhook/send?key=wrong-key-123"))
    assert not bad_key.retryable and "93000" in str(bad_key)


async def test_dingtalk_signed_markdown_and_errors(peer: Peer) -> None:
    signed = peer.make(DingTalkRobot, f"/robot/send?access_token={DING_TOKEN}&signed=required", DING_SECRET)
    await signed.send(notice("emergency"))
    await peer.make(DingTalkRobot, f"/robot/send?access_token={DING_TOKEN}").send(notice("professional"))
    (_, first, query), (_, second, plain_query) = peer.robot_bodies
    assert "timestamp=" in query and "sign=" in query
    assert "sign=" not in plain_query
    md = first["markdown"]
    assert md["title"] == "🚨 【应急事件】新事件 New incident: 3号楼单元门被强行打开"
    assert md["text"].startswith("### 🚨 【应急事件】")
    assert "- 承办 To: 张网格员" in md["text"]
    assert second["markdown"]["title"].startswith("【专业事件】")
    wrong = peer.make(DingTalkRobot, f"/robot/send?access_token={DING_TOKEN}&signed=required", "SECwrong")
    err = await failure(wrong)
    assert not err.retryable and "310000" in str(err)
    needs_sign = f"/robot/send?access_token={DING_TOKEN}&signed=required"
    unsigned = await failure(peer.make(DingTalkRobot, needs_sign))
    assert not unsigned.retryable
    ts = 1_700_000_000_000  # a timestamp whose signature has "+" and "/" (both must be percent-encoded)
    while not {"+", "/"} <= set(b64 := base64.b64encode(hmac.new(
            DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()).decode()):
        ts += 1
    assert str(signed.signed_url(ts)).endswith(
        f"&signed=required&timestamp={ts}&sign={urllib.parse.quote_plus(b64)}")
    busy = await failure(peer.make(DingTalkRobot, "/robot/send?access_token=busy", DING_SECRET))
    assert busy.retryable and "130101" in str(busy)


async def test_feishu_signed_card_and_errors(peer: Peer) -> None:
    robot = peer.make(FeishuRobot, f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}", FEISHU_SECRET)
    await robot.send(notice("emergency"))
    await robot.send(notice("general", key="k2", event="overdue", url=""))
    (_, first, _), (_, second, _) = peer.robot_bodies
    card = first["card"]
    assert card["header"]["template"] == "red"
    assert card["header"]["title"]["content"] == "【应急事件】新事件 New incident: 3号楼单元门被强行打开"
    assert "网格 Grid: 440105001001" in card["elements"][0]["text"]["content"]
    assert card["elements"][1]["actions"][0]["url"] == "https://hub.example/incidents/inc-7"
    assert second["card"]["header"]["template"] == "orange"
    assert len(second["card"]["elements"]) == 1  # no link, no button
    bad = await failure(peer.make(FeishuRobot, f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}", "wrong-secret"))
    assert not bad.retryable and "19021" in str(bad)
    busy = await failure(peer.make(FeishuRobot, "/open-apis/bot/v2/hook/busy", FEISHU_SECRET))
    assert busy.retryable and busy.status == 400 and "9499" in str(busy)
    await peer.make(FeishuRobot, "/open-apis/bot/v2/hook/legacy").send(notice())  # StatusCode 0 = ok


async def test_secrets_never_in_describe_errors_or_logs(peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    channels = [
        peer.make(WebhookChannel, "/status/500", SECRET, name="ops"),
        peer.make(WeComRobot, f"/cgi-bin/webhook/send?key={WECOM_KEY}&x=1", name="grid-1"),
        peer.make(DingTalkRobot, f"/robot/send?access_token={DING_TOKEN}", DING_SECRET),
        peer.make(FeishuRobot, f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}", FEISHU_SECRET),
        peer.make(DingTalkRobot, f"/slow?access_token={DING_TOKEN}", DING_SECRET, timeout_s=0.2),
        peer.make(FeishuRobot, f"/status/404/{FEISHU_TOKEN}", FEISHU_SECRET),
    ]
    texts = []
    for channel in channels:
        texts.append(channel.describe())
        try:
            await channel.send(notice())
        except DeliveryError as exc:
            texts.append(str(exc))
    texts.append(caplog.text)
    assert "delivery failed" in caplog.text
    assert channels[0].describe() == f"webhook 'ops' {peer.base}/status/500"
    assert channels[1].describe() == f"wecom 'grid-1' {peer.base}/cgi-bin/webhook/send"
    assert channels[3].describe() == f"feishu {peer.base}/open-apis/bot/v2/hook/***"
    for text in texts:
        assert "access_token" not in text and "?key" not in text
        for secret in ALL_SECRETS:
            assert secret not in text, (secret, text)


async def test_factory_and_config_errors() -> None:
    kinds = {"webhook": WebhookChannel, "wecom": WeComRobot, "dingtalk": DingTalkRobot, "feishu": FeishuRobot}
    for kind, cls in kinds.items():
        channel = make_http_channel(kind, "https://example.org/x?token=t0ken", "s3cret",
                                    timeout_s=3, name="n")
        assert type(channel) is cls and channel.type == kind
        assert isinstance(channel, HttpChannel) and channel.timeout_s == 3 and channel.name == "n"
        await channel.close()  # no session was opened: a no-op
    with pytest.raises(ConfigError, match="unknown HTTP channel type"):
        make_http_channel("sms", "https://example.org", None)
    with pytest.raises(ConfigError):
        WebhookChannel("ftp://example.org/x")
    with pytest.raises(ConfigError):
        WebhookChannel("https://example.org/x", timeout_s=0)
