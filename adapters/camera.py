"""What every camera config has, whatever adapter brings its video: zones, grid, location.

A camera adapter's config subclasses :class:`CameraBase` (and narrows ``kind``); the hub's detectors,
alert rules and dashboard only ever look at these common fields. Stream URLs come from the adapter's
:meth:`adapters.base.Adapter.streams`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.base import ID_PATTERN, AdapterConfig

Point = tuple[float, float]


class ZoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., pattern=ID_PATTERN, description="Zone id, unique per camera.")
    name: str = Field("", description="Shown to operators.")
    rule: Literal["intrusion", "fall"] = Field("intrusion", description="Rule evaluated in this zone.")
    polygon: list[Point] = Field(..., min_length=3, description="Points as fractions (0..1) of width/height.")
    labels: list[str] = Field(default_factory=lambda: ["person"], description="Labels the rule applies to.")
    min_dwell_s: float = Field(1.0, ge=0, description="Seconds an object must stay inside before a hit.")
    cooldown_s: float = Field(30.0, ge=0, description="Per-track quiet time after a hit.")
    grid: str = Field("", description="Grid code of the zone's area when it differs from the camera's.")

    @field_validator("polygon")
    @classmethod
    def _normalised(cls, pts: list[Point]) -> list[Point]:
        for x, y in pts:
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError("polygon points are fractions of the frame: each x and y must be in 0..1")
        return pts


class CameraBase(AdapterConfig):
    """Fields shared by every camera kind."""

    zones: list[ZoneConfig] = Field(default_factory=list, description="Rule zones.")
    location: tuple[float, float] | None = Field(None, description="(lon, lat) for the grid map.")
    uplink: str = Field(
        "", description="Id of the uplink or NVR the video goes through (a name, or a device/source id whose "
        "device_offline then means the uplink is down): offline alerts of its cameras fold into one incident."
    )

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraBase:
        ids = [z.id for z in self.zones]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"zone ids must be unique per camera: {sorted(dup)}")
        return self
