"""ONVIF device events against the emulated camera (real SOAP 1.2 over HTTP): PullPoint notifications
become typed SourceEvents, the subscription survives reboots and is renewed, odd replies and errors
are retried (``events()`` ends only on close), and a device that ignores the PullMessages timeout is
not polled in a hot loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

import adapters.onvif_events
from adapters.base import Capability
from adapters.onvif_events import EventMapper, Notification, SubscriptionStats, event_kind
from hub.events import EventKind
from tests.adapters import onvif_support
from tests.adapters.onvif_support import FIELD, LINE, MOTION, TAMPER, VIDEO_LOSS, EventTap, camera
from tests.support import onvif_templates as xml
from tests.support.onvif_device import OnvifDevice

rtsp = onvif_support.rtsp
device = onvif_support.device


async def test_device_events_become_typed_source_events(device: OnvifDevice) -> None:
    source = {"VideoSourceConfigurationToken": "vsc0", "VideoAnalyticsConfigurationToken": "va0"}
    async with camera(device) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        device.emit(MOTION, {**source, "Rule": "MyMotionDetectorRule"}, {"IsMotion": "true"})
        motion = await tap.next()
        device.emit(MOTION, {**source, "Rule": "MyMotionDetectorRule"}, {"IsMotion": "true"})  # still on
        device.emit(MOTION, {**source, "Rule": "MyMotionDetectorRule"}, {"IsMotion": "false"})  # falling
        device.emit("tns1:Device/Trigger/Relay", {"RelayToken": "r0"}, {"LogicalState": "active"})  # unknown
        device.emit(TAMPER, {"Source": "vs0"}, {"State": "true"})
        tamper = await tap.next()
        device.emit(VIDEO_LOSS, {"Source": "vs0"}, {"State": "true"})
        loss = await tap.next()
        device.emit(LINE, {**source, "Rule": "北门绊线"}, {"ObjectId": "17"})
        line = await tap.next()
        device.emit(LINE, {**source, "Rule": "北门绊线"}, {"ObjectId": "18"})  # stateless: each one counts
        line2 = await tap.next()
        device.emit(FIELD, {**source, "Rule": "Yard", "Zone": "yard-east"}, {"IsInside": "true"})
        field = await tap.next()
        await tap.nothing(0.3)
        diag = adapter.diagnostics()["events"]

    assert [e.kind for e in (motion, tamper, loss, line, line2, field)] == [
        EventKind.MOTION, EventKind.TAMPER, EventKind.VIDEO_LOSS, EventKind.LINE_CROSSING,
        EventKind.LINE_CROSSING, EventKind.FIELD_DETECTION]
    for event in (motion, tamper, loss, line, field):
        assert event.source_id == "gate-cam" and event.grid == "440105001001"
        assert event.data["source"] == "camera"
        assert abs(event.at - time.time()) < 10  # our clock, not the camera's (two hours off)
    assert motion.data["topic"] == MOTION and motion.data["rule"] == "MyMotionDetectorRule"
    assert motion.data["video_source"] == "vsc0" and motion.data["items"]["IsMotion"] == "true"
    assert tamper.data["topic"] == TAMPER
    assert line.data["rule"] == "北门绊线" and line.data["items"]["ObjectId"] == "17"
    assert field.data["zone"] == "yard-east" and field.data["rule"] == "Yard"
    assert diag["unknown_topics"] == 1 and diag["unknown_samples"] == ["tns1:Device/Trigger/Relay"]
    assert diag["not_edges"] == 2 and diag["events"] == 6 and diag["state"] == "subscribed"
    assert device.calls["Unsubscribe"] == 1, "cancelling events() unsubscribes"


async def test_reboot_drops_the_subscription_and_the_adapter_resubscribes(
        device: OnvifDevice, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.onvif_events")
    async with camera(device) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        device.emit(TAMPER, data={"State": "true"})
        assert (await tap.next()).kind is EventKind.TAMPER
        await device.reboot()  # subscriptions gone: the pending PullMessages gets a fault
        await tap.subscribed(device, count=2)
        # the camera re-announces the ongoing tamper as Initialized: already known, so no new event
        await tap.nothing(0.3)
        device.emit(LINE, data={"ObjectId": "1"})
        assert (await tap.next()).kind is EventKind.LINE_CROSSING
        await device.reboot(down_s=1.5)  # connections reset, then refused for 1.5 s
        await tap.subscribed(device, count=3, within=15)
        device.emit(FIELD, data={"IsInside": "true"})
        assert (await tap.next()).kind is EventKind.FIELD_DETECTION
        diag = adapter.diagnostics()["events"]
    assert diag["outages"] == 2 and diag["subscriptions"] == 3 and diag["failures"] >= 2
    lost = [r for r in caplog.records if "subscription lost" in r.getMessage()]
    assert len(lost) == 2, "one warning per outage, not per failed attempt"
    assert sum("restored" in r.getMessage() for r in caplog.records) == 2


async def test_subscription_is_renewed_before_it_expires(device: OnvifDevice) -> None:
    async with camera(device, subscription_s=2, pull_timeout_s=1) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        await asyncio.sleep(4.5)  # more than two lifetimes
        device.emit(MOTION, data={"IsMotion": "true"})
        assert (await tap.next()).kind is EventKind.MOTION
        diag = adapter.diagnostics()["events"]
    assert device.calls["Renew"] >= 2 and diag["renewals"] >= 2
    assert device.calls["CreatePullPointSubscription"] == 1, "renewed, never lost"
    assert diag["lifetime_s"] == pytest.approx(2.0, abs=0.1)


async def test_events_off(device: OnvifDevice) -> None:
    adapter = camera(device, events=False)
    assert Capability.EVENTS not in (await adapter.probe()).capabilities
    async with adapter, EventTap(adapter) as tap:
        await asyncio.sleep(0.3)
        device.emit(MOTION, data={"IsMotion": "true"})
        await tap.nothing(0.3)
        assert tap.task is not None and not tap.task.done()
    assert device.calls["CreatePullPointSubscription"] == 0
    assert adapter.diagnostics()["events"]["state"] == "disabled"


def test_topic_mapping_ignores_vendor_prefixes() -> None:
    assert event_kind("tns1:VideoSource/MotionAlarm") is EventKind.MOTION
    assert event_kind("tns1:RuleEngine/tnsvendor:CellMotionDetector/Motion") is EventKind.MOTION
    assert event_kind("tns1:VideoSource/GlobalSceneChange/AnalyticsService") is EventKind.TAMPER
    assert event_kind("tns1:VideoSource/VideoLoss") is EventKind.VIDEO_LOSS
    assert event_kind("tns1:VideoSource/GlobalSceneChangeX") is None
    assert event_kind("tns1:Device/HardwareFailure/StorageFailure") is None
    mapper = EventMapper("cam", "", SubscriptionStats())
    first = mapper(Notification(MOTION, "Initialized", {"Rule": "r"}, {"IsMotion": "true"}))
    assert first is not None and first.data["initial"] is True and first.grid is None
    assert mapper(Notification(MOTION, "Initialized", {"Rule": "r"}, {"IsMotion": "true"})) is None
    assert mapper(Notification(MOTION, "Deleted", {"Rule": "r"}, {"IsMotion": "false"})) is None
    assert mapper(Notification(MOTION, "Changed", {"Rule": "r"}, {"IsMotion": "true"})) is not None




# -- robustness ---------------------------------------------------------------------------------------
async def _until(cond: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        await asyncio.sleep(0.02)


def _lost_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "subscription lost" in r.getMessage()]


async def test_a_subscription_reply_without_an_address_is_retried_not_fatal(
        device: OnvifDevice, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.onvif_events")
    now = xml.iso(device.now())
    device.replies["CreatePullPointSubscription"] = (  # an EndpointReference without its wsa:Address
        "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference/>"
        f"<wsnt:CurrentTime>{now}</wsnt:CurrentTime><wsnt:TerminationTime>{now}</wsnt:TerminationTime>"
        "</tev:CreatePullPointSubscriptionResponse>")
    async with camera(device, resubscribe_max_s=1) as adapter, EventTap(adapter) as tap:
        # the third reply handled (the device counts a call when it arrives; the adapter is "connecting"
        # until it has read the reply)
        await _until(lambda: device.calls["CreatePullPointSubscription"] >= 3
                     and adapter.diagnostics()["events"]["state"] == "lost", 10, "retried twice")
        diag = adapter.diagnostics()["events"]
        assert tap.task is not None and not tap.task.done(), "events() must not end by itself"
        assert "no subscription address" in diag["last_error"]
        del device.replies["CreatePullPointSubscription"]  # the firmware behaves again
        await tap.subscribed(device, count=device.calls["CreatePullPointSubscription"] + 1)
        device.emit(MOTION, data={"IsMotion": "true"})
        assert (await tap.next()).kind is EventKind.MOTION
        diag = adapter.diagnostics()["events"]
    assert diag["outages"] == 1 and diag["subscriptions"] == 1 and diag["failures"] >= 2
    assert len(_lost_warnings(caplog)) == 1


async def test_an_unexpected_error_is_logged_once_and_retried(
        device: OnvifDevice, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="adapters.onvif_events")
    real = adapters.onvif_events.parse_notification
    failures = [KeyError("a bug")]

    def fragile(raw: Any) -> Notification | None:
        if failures:
            raise failures.pop()
        return real(raw)

    monkeypatch.setattr(adapters.onvif_events, "parse_notification", fragile)
    async with camera(device, resubscribe_max_s=1) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        device.emit(LINE, data={"ObjectId": "1"})  # meets the bug: dropped, then a re-subscription
        await tap.subscribed(device, count=2)
        device.emit(LINE, data={"ObjectId": "2"})
        event = await tap.next()
        diag = adapter.diagnostics()["events"]
    assert event.data["items"]["ObjectId"] == "2"
    assert diag["outages"] == 1 and diag["failures"] == 1 and diag["state"] == "subscribed"
    (warning,) = _lost_warnings(caplog)
    assert "KeyError" in warning.getMessage()
    assert warning.exc_info is not None and warning.exc_info[0] is KeyError  # the traceback, logged once


async def test_a_device_that_ignores_the_pull_timeout_is_not_polled_in_a_hot_loop(
        device: OnvifDevice, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.onvif_events")
    device.pull_waits = False  # PullMessages answers an empty list at once
    async with camera(device, pull_timeout_s=5) as adapter, EventTap(adapter) as tap:
        await tap.subscribed(device)
        pulls0 = device.calls["PullMessages"]
        await asyncio.sleep(2.0)
        pulls = device.calls["PullMessages"] - pulls0
        device.emit(MOTION, data={"IsMotion": "true"})
        t0 = time.monotonic()
        assert (await tap.next(within=5)).kind is EventKind.MOTION
        latency = time.monotonic() - t0
        diag = adapter.diagnostics()["events"]
    print(f"{pulls} PullMessages in 2 s; event after {latency:.2f} s")
    assert 1 <= pulls <= 4, f"{pulls} PullMessages in 2 s (about one a second expected)"
    assert latency < 2.5, "events still arrive within about a pull interval"
    assert diag["early_pulls"] >= 1 and diag["outages"] == 0
    assert sum("answers PullMessages at once" in r.getMessage() for r in caplog.records) == 1
