"""Inhibition: when a village uplink or an NVR goes down, its cameras' offline alerts fold under one.

Cameras name the uplink or NVR their video goes through (``cameras[].uplink``). Two ways make an
``uplink_down`` incident:

* a device or source whose id is an uplink reports ``device_offline`` (the NVR's or the village
  gateway's last will on MQTT): that is ``uplink_down`` at once, and the offline alerts of its
  cameras within ``dispatch.inhibit_window_s`` join it instead of opening their own incidents;
* a second camera behind the same uplink goes offline within the window of the first: the first
  camera's ``camera_offline`` incident becomes the uplink's ``uplink_down`` incident and every
  further camera (and the uplink's own ``device_offline``) joins it.

One incident per outage reaches the 运维 team instead of one per camera.
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.classification import TITLES
from alerts.correlation import IncidentIndex, Key, OpenIncident, Trigger
from hub.config import CameraBase

CAMERA_OFFLINE = "camera_offline"
UPLINK_DOWN = "uplink_down"


def uplink_key(uplink: str) -> Key:
    return ("uplink", uplink, UPLINK_DOWN, None)


def uplink_title(uplink: str, cameras: int) -> str:
    base = f"{TITLES[UPLINK_DOWN]} — {uplink}"
    return f"{base} ({cameras} cameras offline)" if cameras else base


class Inhibition:
    def __init__(self, cameras: Iterable[CameraBase], window_s: float) -> None:
        self.window_s = window_s
        self.uplink_of = {c.id: c.uplink for c in cameras if c.uplink and c.enabled}
        self.cameras_of: dict[str, set[str]] = {}
        for cam, uplink in self.uplink_of.items():
            self.cameras_of.setdefault(uplink, set()).add(cam)

    def is_uplink(self, source_id: str) -> bool:
        return source_id in self.cameras_of

    def uplink_for(self, trig: Trigger) -> str | None:
        """The uplink a trigger is about: a camera's offline alert, or the uplink's own outage."""
        if self.window_s <= 0:
            return None
        if trig.kind == CAMERA_OFFLINE:
            return self.uplink_of.get(trig.key[1])
        if trig.kind == UPLINK_DOWN:
            return trig.key[1]
        return None

    def fold(self, index: IncidentIndex, uplink: str, at: float) -> OpenIncident | None:
        """The incident an outage behind ``uplink`` at ``at`` folds into: the uplink's own, else another
        camera's offline incident behind it (which then becomes the uplink's)."""
        key = uplink_key(uplink)
        cameras = self.cameras_of.get(uplink, set())
        recent = [inc for inc in index.recent() if abs(at - inc.last_seen) <= self.window_s]
        for inc in recent:
            if key in inc.keys:
                return inc
        for inc in recent:
            if inc.kind == CAMERA_OFFLINE and any(k[2] == CAMERA_OFFLINE and k[1] in cameras
                                                  for k in inc.keys):
                return inc
        return None

    def cameras_in(self, inc: OpenIncident) -> int:
        """How many cameras' offline alerts an incident holds."""
        return len({k[1] for k in inc.keys if k[2] == CAMERA_OFFLINE})
