"""In-process publish/subscribe bus.

Each subscriber owns a bounded queue. A slow subscriber never blocks publishers:
when its queue is full the oldest message is dropped and counted, so a stuck
WebSocket client cannot stall detection. The interface (``publish``/``subscribe``)
is what a NATS JetStream bus implements for multi-node deployments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Subscription:
    topics: frozenset[str]
    queue: asyncio.Queue[tuple[str, Any]]
    dropped: int = 0

    def offer(self, topic: str, message: Any) -> None:
        while True:
            try:
                self.queue.put_nowait((topic, message))
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                self.dropped += 1

    async def get(self) -> tuple[str, Any]:
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            yield await self.queue.get()


@dataclass
class Bus:
    """Topic-based fan-out. ``"*"`` subscribes to everything."""

    default_maxsize: int = 1000
    _subs: dict[str, list[Subscription]] = field(default_factory=lambda: defaultdict(list))
    published: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def publish(self, topic: str, message: Any) -> None:
        self.published[topic] += 1
        for sub in self._subs.get(topic, ()):
            sub.offer(topic, message)
        for sub in self._subs.get("*", ()):
            sub.offer(topic, message)

    def subscribe(self, *topics: str, maxsize: int | None = None) -> Subscription:
        sub = Subscription(frozenset(topics), asyncio.Queue(maxsize or self.default_maxsize))
        for topic in topics:
            self._subs[topic].append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        for topic in sub.topics:
            subs = self._subs.get(topic)
            if subs and sub in subs:
                subs.remove(sub)

    @asynccontextmanager
    async def subscription(self, *topics: str, maxsize: int | None = None) -> AsyncIterator[Subscription]:
        sub = self.subscribe(*topics, maxsize=maxsize)
        try:
            yield sub
        finally:
            self.unsubscribe(sub)

    def queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for topic, subs in self._subs.items():
            depths[topic] = sum(s.queue.qsize() for s in subs)
        return depths

    def dropped(self) -> int:
        seen: set[int] = set()
        total = 0
        for subs in self._subs.values():
            for s in subs:
                if id(s) not in seen:
                    seen.add(id(s))
                    total += s.dropped
        return total


# Topic names used across packages.
TOPIC_SOURCE_EVENT = "source_event"
TOPIC_RULE_HIT = "rule_hit"
TOPIC_ALERT = "alert"
TOPIC_INCIDENT = "incident"
TOPIC_INCIDENT_UPDATE = "incident_update"  # later changes to a published incident
TOPIC_TRANSITION = "incident_transition"  # every stored lifecycle transition
TOPIC_NOTICE = "notice"  # a notice for a person on the WebSocket channel
TOPIC_CAMERA = "camera"
TOPIC_DEVICE = "device"
TOPIC_DETECTIONS = "detections"
