"""Night hours and the incident class table."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from alerts.classification import classify, is_night, stronger
from hub.config import NightHours

SH = ZoneInfo("Asia/Shanghai")


def _at(hour: int, minute: int = 0) -> float:
    return datetime(2025, 3, 1, hour, minute, tzinfo=SH).timestamp()


def test_night_window_wraps_midnight() -> None:
    night = NightHours(start="22:00", end="06:00")
    assert is_night(_at(23), night, SH)
    assert is_night(_at(2), night, SH)
    assert is_night(_at(22, 0), night, SH)
    assert not is_night(_at(6, 0), night, SH)
    assert not is_night(_at(12), night, SH)
    # the same instant is day in UTC (23:00 Shanghai = 15:00 UTC)
    assert not is_night(_at(23), night, ZoneInfo("UTC"))


def test_night_window_within_one_day() -> None:
    siesta = NightHours(start="12:00", end="14:00")
    assert is_night(_at(13), siesta, SH)
    assert not is_night(_at(15), siesta, SH)


def test_class_table() -> None:
    assert classify("door_forced", night=True) == "emergency"
    assert classify("door_forced", night=False) == "professional"
    assert classify("door_opened", night=True) == "general"
    assert classify("door_opened", night=True, correlated=True) == "professional"
    assert classify("lock_failed_attempts", night=True) == "professional"
    assert classify("tamper", night=False) == "professional"
    assert classify("fall", night=False) == "emergency"
    assert classify("intrusion", night=True) == "general"
    assert stronger("general", "emergency") == "emergency"
    assert stronger("professional", "general") == "professional"
