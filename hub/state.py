"""Live state of cameras, kept from reader callbacks (devices: ``DeviceHub.status()``).

This is what the API reports for ``/api/cameras`` and what the
health endpoint summarises. Credentials never enter it: URLs are redacted on the way in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hub.bus import TOPIC_CAMERA, Bus
from hub.config import CameraBase
from hub.metrics import Metrics
from hub.redact import redact_text


@dataclass
class CameraState:
    cfg: CameraBase
    online: bool = False
    since: float = field(default_factory=time.time)
    reason: str = "starting"

    def to_json(self, stats: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.cfg.id,
            "name": self.cfg.name or self.cfg.id,
            "grid": self.cfg.grid,
            "status": "online" if self.online else "offline",
            "since": self.since,
            "reason": redact_text(self.reason),
            "enabled": self.cfg.enabled,
            "zones": [
                {"id": z.id, "name": z.name, "rule": z.rule, "polygon": [list(p) for p in z.polygon]}
                for z in self.cfg.zones
            ],
        }
        if stats:
            data["stats"] = stats
        return data


class LiveState:
    def __init__(self, cameras: list[CameraBase], bus: Bus, metrics: Metrics) -> None:
        self.bus = bus
        self.metrics = metrics
        self.cameras = {c.id: CameraState(c) for c in cameras}

    def camera_status(self, camera_id: str, online: bool, reason: str) -> None:
        """Reader callback (runs on the loop): record a transition and publish it."""
        cam = self.cameras.get(camera_id)
        if cam is None:
            return
        cam.online, cam.reason, cam.since = online, reason, time.time()
        self.metrics.camera_online.labels(camera_id).set(1 if online else 0)
        self.bus.publish(TOPIC_CAMERA, cam.to_json())
