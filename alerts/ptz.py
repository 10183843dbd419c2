"""A sensor-only alert turns the linked PTZ cameras to their presets (``devices[].ptz_on_alert``).

A door forced with no camera having seen anyone yet: the PTZ dome linked to that door is asked
(through its adapter, e.g. ONVIF ``GotoPreset``) to look at the door, so the person the door
sensor felt can be seen, tracked and fused into the same incident. Each move is recorded in the
incident's history; a camera that refuses or does not answer in ``timeout_s`` is logged and noted,
never retried in a loop and never blocks the alert engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from hub.config import DeviceConfig
from hub.errors import AdapterError
from hub.redact import redact_text
from hub.storage import Database

log = logging.getLogger(__name__)

#: camera id, command name, arguments -> the adapter's answer
Command = Callable[..., Awaitable[dict[str, Any]]]


class PresetMover:
    def __init__(self, devices: Iterable[DeviceConfig], command: Command, db: Database, *,
                 timeout_s: float = 10.0) -> None:
        self.presets = {d.id: dict(d.ptz_on_alert) for d in devices if d.ptz_on_alert}
        self.command = command
        self.db = db
        self.timeout_s = timeout_s
        self.moves = 0
        self.failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def wants(self, device_id: str) -> bool:
        return device_id in self.presets

    def move_for(self, device_id: str, incident_id: str) -> None:
        """Start turning ``device_id``'s PTZ cameras (in the background: the engine goes on)."""
        for camera_id, preset in self.presets.get(device_id, {}).items():
            task = asyncio.create_task(self._move(camera_id, preset, device_id, incident_id),
                                       name=f"ptz-{camera_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until the moves started so far are done (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _move(self, camera_id: str, preset: str, device_id: str, incident_id: str) -> None:
        try:
            answer = await asyncio.wait_for(self.command(camera_id, "goto_preset", preset=preset),
                                            self.timeout_s)
        except Exception as exc:
            self.failures += 1
            reason = redact_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            log.warning("PTZ %s could not go to preset %r for %s: %s", camera_id, preset, device_id, reason)
            note = f"PTZ {camera_id} → preset {preset} failed: {reason}"
        else:
            self.moves += 1
            name = answer.get("name") or preset
            log.info("PTZ %s turned to preset %r (%s) for %s", camera_id, name, answer.get("preset"),
                     device_id)
            note = f"PTZ {camera_id} → preset {name} (for {device_id})"
        try:
            row = await self.db.get_incident(incident_id)
            state = row["state"] if row else "received"
            await self.db.add_history(incident_id, state, action="ptz", note=note)
        except Exception:
            log.exception("incident %s: recording the PTZ move failed", incident_id)


def ptz_command(feeds: Mapping[str, Any]) -> Command:
    """The command function over the hub's camera feeds (each holds its camera's adapter)."""

    async def command(camera_id: str, name: str, **args: Any) -> dict[str, Any]:
        feed = feeds.get(camera_id)
        if feed is None:
            raise AdapterError(f"camera {camera_id!r} is not running (disabled or unknown)")
        answer: dict[str, Any] = await feed.adapter.command(name, **args)
        return answer

    return command
