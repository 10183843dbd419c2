"""Which alerts raise incidents, of which class and department, and what "night" is.

The class comes from ``dispatch.rules`` in the config (first rule naming the kind wins: a day
class, an optional night class and an optional class when sensor and video evidence fuse); the
defaults give this table:

Classes (DESIGN.md): ``general`` — the grid worker handles it on the spot;
``professional`` — routed to the responsible department; ``emergency`` — both, and the
duty leader is notified at once.

==========================  =============  ==============  ==========================
trigger                     by day         at night        with a person on a linked
                                                           camera (correlated)
==========================  =============  ==============  ==========================
door_forced                 professional   emergency       day professional, night emergency
door_opened (night only)    —              general         professional
lock_failed_attempts        general        professional    (not correlated)
door_held_open              general        general         (not correlated)
tamper                      professional   professional    (not correlated)
intrusion_alarm (panel)     professional   emergency       day professional, night emergency
field_detection (camera)    general        professional    (the camera's own snapshot)
line_crossing (camera)      general        professional    (the camera's own snapshot)
video_loss (camera)         professional   professional    —
intrusion (rule hit)        general        general         (joins the door's incident)
fall (rule hit)             emergency      emergency       —
other rule hits             general        general         —
==========================  =============  ==============  ==========================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from zoneinfo import ZoneInfo

from alerts.settings import ClassRule, DispatchSection
from hub.config import NightHours

DEFAULT_RULES: tuple[ClassRule, ...] = tuple(DispatchSection().rules)

CLASS_RANK = {"general": 0, "professional": 1, "emergency": 2}

#: Source events that raise alerts. Door and alarm-zone triggers correlate with people on the cameras
#: linked to the door/zone; camera-reported events (ONVIF analytics) carry that camera's own snapshot.
DEVICE_ALERTS = frozenset({"door_forced", "door_opened", "lock_failed_attempts", "door_held_open", "tamper",
                           "intrusion_alarm", "field_detection", "line_crossing", "video_loss"})
DOOR_TRIGGERS = frozenset({"door_forced", "door_opened", "intrusion_alarm"})

TITLES = {
    "door_forced": "强行开门 Door forced",
    "door_opened": "夜间开门 Door opened at night",
    "lock_failed_attempts": "多次开锁失败 Repeated failed unlock attempts",
    "door_held_open": "门未关 Door held open",
    "tamper": "设备被破坏 Device tampered",
    "intrusion": "区域入侵 Intrusion",
    "intrusion_alarm": "入侵报警 Intrusion alarm",
    "field_detection": "摄像机区域入侵 Camera field detection",
    "line_crossing": "摄像机越界 Camera line crossing",
    "video_loss": "视频丢失 Video lost",
    "fall": "人员跌倒 Person fell",
    "camera_offline": "摄像机离线 Camera offline",
    "uplink_down": "上联/NVR 中断 Uplink or NVR down",
}


def rule_for(kind: str, rules: Sequence[ClassRule] | None = None) -> ClassRule | None:
    """The first rule naming ``kind`` (or ``*``)."""
    for rule in rules if rules is not None else DEFAULT_RULES:
        if kind in rule.kinds or "*" in rule.kinds:
            return rule
    return None


def classify(kind: str, *, night: bool, correlated: bool = False,
             rules: Sequence[ClassRule] | None = None) -> str:
    """The class of an alert of ``kind`` by the rules (``dispatch.rules``; defaults in the table above)."""
    rule = rule_for(kind, rules)
    if rule is None:
        return "general"
    cls: str = rule.night_class if night and rule.night_class else rule.class_
    if correlated and rule.fused_class:
        cls = stronger(cls, rule.fused_class)
    return cls


def department(kind: str, rules: Sequence[ClassRule] | None = None) -> str:
    rule = rule_for(kind, rules)
    return rule.department if rule is not None else ""


def stronger(a: str, b: str) -> str:
    return a if CLASS_RANK.get(a, 0) >= CLASS_RANK.get(b, 0) else b


def title(kind: str, where: str) -> str:
    base = TITLES.get(kind, kind.replace("_", " ").capitalize())
    return f"{base} — {where}" if where else base


def _hm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_night(at: float, hours: NightHours, tz: ZoneInfo | None = None) -> bool:
    """True if ``at`` (epoch seconds) falls in the night window, in ``tz`` (None = system local)."""
    local = datetime.fromtimestamp(at, tz).time()
    start, end = _hm(hours.start), _hm(hours.end)
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # window wraps past midnight (22:00-06:00)
