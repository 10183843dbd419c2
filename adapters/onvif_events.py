"""ONVIF device events: a PullPoint subscription kept alive forever, and topics mapped to typed events.

:func:`pull_events` creates a PullPoint subscription (CreatePullPointSubscription), long-polls it
(PullMessages), renews it at 80 % of the lifetime the device granted (5 s before its end if that is
sooner, never before half of it), and when the subscription is lost (the camera rebooted:
PullMessages faults with an unknown subscription, the connection is refused, Renew fails) connects
again and re-subscribes with jittered backoff, forever, logging once per outage. Any other failure
(an odd reply, a bug) is handled the same way: ``events()`` ends only when the adapter closes. A
device that ignores the long-poll timeout and answers empty at once is pulled about once a second,
not in a hot loop.

:class:`EventMapper` turns notifications into :class:`~hub.events.SourceEvent` s:

==============================================================  ===========================
topic (namespace prefixes ignored)                              event
==============================================================  ===========================
``VideoSource/MotionAlarm``, ``RuleEngine/CellMotionDetector/   ``motion``
Motion``, ``RuleEngine/MotionRegionDetector/Motion``
``VideoSource/GlobalSceneChange/*``,                            ``tamper``
``RuleEngine/TamperDetector/Tamper``
``VideoSource/SignalLoss``, ``VideoSource/VideoLoss``           ``video_loss``
``RuleEngine/LineDetector/Crossed``                             ``line_crossing``
``RuleEngine/FieldDetector/ObjectsInside``                      ``field_detection``
==============================================================  ===========================

Stateful topics (a ``State``/``IsMotion``/``IsInside``/``IsTamper`` data item) report only rising
edges: false→true, or a first true (also from an ``Initialized`` message right after subscribing,
unless the state was already known true — so a re-subscription after a reboot does not repeat an
ongoing alarm). Stateless topics (a line crossing) report every message. Unknown topics are
counted (with a few samples for diagnostics) and ignored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.onvif_client import OnvifSession, map_error
from hub.errors import AdapterAuthError, AdapterError
from hub.events import EventKind, SourceEvent
from streams.backoff import Backoff

log = logging.getLogger(__name__)

TOPIC_KINDS: tuple[tuple[str, EventKind], ...] = (
    ("VideoSource/MotionAlarm", EventKind.MOTION),
    ("RuleEngine/CellMotionDetector/Motion", EventKind.MOTION),
    ("RuleEngine/MotionRegionDetector/Motion", EventKind.MOTION),
    ("VideoSource/GlobalSceneChange", EventKind.TAMPER),
    ("RuleEngine/TamperDetector/Tamper", EventKind.TAMPER),
    ("VideoSource/SignalLoss", EventKind.VIDEO_LOSS),
    ("VideoSource/VideoLoss", EventKind.VIDEO_LOSS),
    ("RuleEngine/LineDetector/Crossed", EventKind.LINE_CROSSING),
    ("RuleEngine/FieldDetector/ObjectsInside", EventKind.FIELD_DETECTION),
)
STATE_ITEMS = ("State", "IsMotion", "IsInside", "IsTamper", "IsVideoLoss", "IsGlobalSceneChange")
ZONE_ITEMS = ("Zone", "ZoneName", "Field", "Region", "RegionName")
_MAX_UNKNOWN_SAMPLES = 10


def topic_path(topic: str) -> str:
    """``tns1:RuleEngine/tnsx:Foo/Bar`` → ``RuleEngine/Foo/Bar`` (prefixes differ between vendors)."""
    return "/".join(part.rsplit(":", 1)[-1] for part in topic.strip().split("/") if part)


def event_kind(topic: str) -> EventKind | None:
    path = topic_path(topic)
    for prefix, kind in TOPIC_KINDS:
        if path == prefix or path.startswith(prefix + "/"):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``wsnt:NotificationMessage``, flattened."""

    topic: str  # as the device wrote it, prefix included
    operation: str = ""  # Initialized, Changed, Deleted (or empty)
    source: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    utc_time: str | None = None


def _simple_items(holder: Any) -> dict[str, str]:
    if holder is None:
        return {}
    if hasattr(holder, "iter"):  # a raw lxml element (a payload zeep did not bind)
        return {str(e.get("Name")): str(e.get("Value", "")) for e in holder.iter()
                if str(e.tag).endswith("SimpleItem") and e.get("Name")}
    items = getattr(holder, "SimpleItem", None) or []
    return {str(i.Name): "" if i.Value is None else str(i.Value) for i in items if getattr(i, "Name", None)}


def parse_notification(raw: Any) -> Notification | None:
    """A zeep ``NotificationMessage`` (or ``None`` if it has no topic)."""
    topic_el = getattr(raw, "Topic", None)
    topic = getattr(topic_el, "_value_1", None) if topic_el is not None else None
    if not isinstance(topic, str) or not topic.strip():
        return None
    message = getattr(getattr(raw, "Message", None), "_value_1", None)
    if message is None:
        return Notification(topic=topic.strip())
    if hasattr(message, "iter"):  # raw lxml tt:Message
        source = next((e for e in message.iter() if str(e.tag).endswith("}Source")), None)
        data = next((e for e in message.iter() if str(e.tag).endswith("}Data")), None)
        return Notification(topic.strip(), str(message.get("PropertyOperation") or ""), _simple_items(source),
                            _simple_items(data), message.get("UtcTime"))
    utc = getattr(message, "UtcTime", None)
    utc_text = utc.isoformat() if isinstance(utc, dt.datetime) else (str(utc) if utc else None)
    return Notification(topic.strip(), str(getattr(message, "PropertyOperation", "") or ""),
                        _simple_items(getattr(message, "Source", None)),
                        _simple_items(getattr(message, "Data", None)), utc_text)


@dataclass
class SubscriptionStats:
    """Counters for diagnostics (no secrets)."""

    state: str = "idle"  # idle, disabled, connecting, subscribed, lost, unsupported
    subscriptions: int = 0  # PullPoint subscriptions created
    renewals: int = 0
    pulls: int = 0
    messages: int = 0  # notifications received
    events: int = 0  # SourceEvents yielded
    not_edges: int = 0  # known topics that were not a rising edge
    unknown_topics: int = 0
    unknown_samples: list[str] = field(default_factory=list)
    outages: int = 0
    failures: int = 0
    early_pulls: int = 0  # empty pulls that came back long before their timeout (device ignores it)
    last_error: str | None = None
    lifetime_s: float | None = None  # what the device granted

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


class EventMapper:
    """Notifications → :class:`SourceEvent` s for one camera (keeps the last state per property)."""

    def __init__(self, source_id: str, grid: str, stats: SubscriptionStats) -> None:
        self.source_id = source_id
        self.grid = grid or None
        self.stats = stats
        self._states: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}

    def __call__(self, n: Notification) -> SourceEvent | None:
        kind = event_kind(n.topic)
        if kind is None:
            self.stats.unknown_topics += 1
            samples = self.stats.unknown_samples
            if n.topic not in samples and len(samples) < _MAX_UNKNOWN_SAMPLES:
                samples.append(n.topic)
            return None
        key = (topic_path(n.topic), tuple(sorted(n.source.items())))
        state_item = next((k for k in STATE_ITEMS if k in n.data), None)
        if n.operation == "Deleted":
            self._states.pop(key, None)
            self.stats.not_edges += 1
            return None
        if state_item is not None:
            state = n.data[state_item].strip().lower() in ("true", "1")
            previous = self._states.get(key)
            self._states[key] = state
            if not state or previous is True:
                self.stats.not_edges += 1
                return None
        self.stats.events += 1
        return SourceEvent(source_id=self.source_id, kind=kind, grid=self.grid, data=self._data(n))

    @staticmethod
    def _data(n: Notification) -> dict[str, Any]:
        items = {**n.source, **n.data}
        data: dict[str, Any] = {"source": "camera", "topic": n.topic, "operation": n.operation,
                                "items": items, "device_time": n.utc_time}
        rule = n.source.get("Rule") or n.data.get("Rule")
        if rule:
            data["rule"] = rule
        zone = next((items[k] for k in ZONE_ITEMS if items.get(k)), None)
        if zone:
            data["zone"] = zone
        video_source = (n.source.get("VideoSourceConfigurationToken") or n.source.get("VideoSourceToken")
                        or n.source.get("Source"))
        if video_source:
            data["video_source"] = video_source
        if n.operation == "Initialized":
            data["initial"] = True
        return data


@dataclass(frozen=True, slots=True)
class PullSettings:
    subscription_s: float = 60.0  # requested lifetime; see _renew_after for when it is renewed
    pull_timeout_s: float = 10.0  # PullMessages long-poll
    message_limit: int = 100
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    # A pull that comes back empty in under 10 % of its wait means the device ignores the long-poll
    # timeout: pull no more often than this then (instead of back to back, a hot loop).
    min_pull_interval_s: float = 1.0


async def pull_events(
    connect: Callable[[], Awaitable[OnvifSession | None]],
    release: Callable[[OnvifSession], Awaitable[None]],
    mapper: EventMapper,
    settings: PullSettings,
    label: str,
) -> AsyncIterator[SourceEvent]:
    """Events from PullPoint subscriptions until cancelled (re-subscribes after any loss).

    ``connect`` opens a fresh session (so a reboot's new clock and addresses are read again), or
    returns ``None`` once the adapter is closed, which ends the iteration; ``release`` closes it.
    """
    stats = mapper.stats
    backoff = Backoff(initial=settings.retry_initial_s, maximum=settings.retry_max_s)
    outage_since: float | None = None
    while True:
        session: OnvifSession | None = None
        subscribed_at: float | None = None
        stats.state = "connecting"
        try:
            session = await connect()
            if session is None:
                return
            if not session.has("events"):
                stats.state = "unsupported"
                log.warning("%s: the device offers no event service; no ONVIF events", label)
                await asyncio.Event().wait()  # never ends by itself (cancel to stop)
            lifetime = await session.create_pullpoint(settings.subscription_s)
            subscribed_at = time.monotonic()
            stats.subscriptions += 1
            stats.state, stats.lifetime_s, stats.last_error = "subscribed", lifetime, None
            if outage_since is not None:
                log.info("%s: event subscription restored after %.1f s", label, subscribed_at - outage_since)
                outage_since = None
            renew_at = subscribed_at + _renew_after(lifetime)
            while True:
                if time.monotonic() >= renew_at:
                    lifetime = await session.renew(settings.subscription_s)
                    stats.renewals += 1
                    stats.lifetime_s = lifetime
                    renew_at = time.monotonic() + _renew_after(lifetime)
                wait = max(0.0, min(settings.pull_timeout_s, renew_at - time.monotonic()))
                started = time.monotonic()
                messages = await session.pull(wait, settings.message_limit)
                stats.pulls += 1
                stats.messages += len(messages)
                took = time.monotonic() - started
                if not messages and took < 0.1 * wait:
                    if not stats.early_pulls:
                        log.info("%s: the device answers PullMessages at once instead of waiting up to "
                                 "%.0f s; pulling every %.1f s", label, wait, settings.min_pull_interval_s)
                    stats.early_pulls += 1
                    await asyncio.sleep(max(0.0, min(wait, settings.min_pull_interval_s) - took))
                for raw in messages:
                    notification = parse_notification(raw)
                    event = mapper(notification) if notification is not None else None
                    if event is not None:
                        yield event
        except Exception as exc:  # events() ends only on close; every failure but refused credentials: retry
            error = exc if isinstance(exc, AdapterError) else map_error(exc, label)
            if isinstance(error, AdapterAuthError):  # the hub reports it once and waits minutes
                stats.state, stats.last_error = "auth_failed", str(error)
                raise error from None
            unexpected = None if isinstance(exc, AdapterError) else exc  # a bug or an unmapped odd reply
            stats.state, stats.last_error = "lost", str(error)
            stats.failures += 1
            if outage_since is None:
                outage_since = time.monotonic()
                stats.outages += 1
                log.warning("%s: event subscription lost (%s); re-subscribing with backoff", label, error,
                            exc_info=unexpected)
            else:
                log.debug("%s: re-subscribe failed: %s", label, error, exc_info=unexpected)
            delay = backoff.failure(time.monotonic() - subscribed_at if subscribed_at is not None else 0.0)
        finally:
            if session is not None:
                try:
                    if stats.state == "subscribed":
                        await session.unsubscribe()
                except Exception as exc:  # best effort: the subscription also expires by itself
                    log.debug("%s: unsubscribe failed: %s", label, exc)
                finally:
                    await release(session)
        await asyncio.sleep(delay)


def _renew_after(lifetime: float) -> float:
    """Renew at 80 % of the lifetime, or 5 s before its end if sooner, but not before half of it."""
    return max(0.5, min(0.8 * lifetime, max(0.5 * lifetime, lifetime - 5.0)))
