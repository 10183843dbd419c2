"""Camera offline alerts: a camera whose stream stays down for ``alerts.camera_offline_after_s``.

The stream readers report every online/offline transition on the bus (``camera`` topic, from
:class:`hub.state.LiveState`); a blip shorter than the delay raises nothing. A camera that never came
online since the hub started counts as offline from the start. When the camera comes back the
engine is told (its open incident gets a history note); the incident itself stays for people to
close. Cameras behind one uplink or NVR fold into one incident (:mod:`alerts.inhibit`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hub.bus import TOPIC_CAMERA, Bus
from hub.config import CameraBase

log = logging.getLogger(__name__)

OnOffline = Callable[[str, float, str], Awaitable[None]]  # camera id, offline since, reason
OnOnline = Callable[[str, float], Awaitable[None]]


class CameraWatch:
    def __init__(self, cameras: Iterable[CameraBase], bus: Bus, *, after_s: float,
                 online: Callable[[str], bool], on_offline: OnOffline, on_online: OnOnline,
                 clock: Callable[[], float] = time.time) -> None:
        self.cameras = [c.id for c in cameras if c.enabled]
        self.bus = bus
        self.after_s = after_s
        self.online = online
        self.on_offline = on_offline
        self.on_online = on_online
        self.clock = clock
        self.alerted: set[str] = set()
        self._pending: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        started = self.clock()
        async with self.bus.subscription(TOPIC_CAMERA) as sub:
            try:
                for cam in self.cameras:
                    if not self.online(cam):
                        self._arm(cam, started, "never came online since the hub started")
                while True:
                    _, msg = await sub.get()
                    if isinstance(msg, dict):
                        await self._status(msg)
            finally:
                for task in self._pending.values():
                    task.cancel()

    async def _status(self, msg: dict[str, Any]) -> None:
        cam = str(msg.get("id"))
        if cam not in self.cameras:
            return
        if msg.get("status") == "online":
            if (task := self._pending.pop(cam, None)) is not None:
                task.cancel()
            if cam in self.alerted:
                self.alerted.discard(cam)
                try:
                    await self.on_online(cam, float(msg.get("since") or self.clock()))
                except Exception:
                    log.exception("camera %s back online: recording it failed", cam)
        elif cam not in self._pending and cam not in self.alerted:
            self._arm(cam, float(msg.get("since") or self.clock()), str(msg.get("reason") or "offline"))

    def _arm(self, cam: str, since: float, reason: str) -> None:
        self._pending[cam] = asyncio.create_task(self._after(cam, since, reason), name=f"offline-{cam}")

    async def _after(self, cam: str, since: float, reason: str) -> None:
        await asyncio.sleep(max(0.0, since + self.after_s - self.clock()))
        if self.online(cam):
            self._pending.pop(cam, None)
            return
        self.alerted.add(cam)
        self._pending.pop(cam, None)
        log.warning("camera %s offline for %.0f s: raising camera_offline", cam, self.clock() - since)
        try:
            await self.on_offline(cam, since, reason)
        except Exception:
            log.exception("camera %s offline: raising the alert failed", cam)
