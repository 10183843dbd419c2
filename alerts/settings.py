"""Configuration of grids, people and the dispatch loop (``grids:``, ``people:``, ``dispatch:``,
``silences:``), of the alert engine (``alerts:``) and of the doors and locks it fuses (``devices:``).
Re-exported by :mod:`hub.config`; pydantic v2, ``extra="forbid"`` everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.camera import Point

GridLevel = Literal["district", "street", "community", "grid", "micro_grid"]
GRID_LEVELS: tuple[str, ...] = ("district", "street", "community", "grid", "micro_grid")
Role = Literal["grid_worker", "grid_leader", "patrol", "department", "duty_leader", "operator", "integrator",
               "admin"]
IncidentClass = Literal["general", "professional", "emergency"]
CLASSES: tuple[str, ...] = ("general", "professional", "emergency")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridConfig(Strict):
    """One node of the grid hierarchy (区 > 街道 > 社区 > 网格 > 微网格)."""

    code: str = Field(..., pattern=r"^[0-9A-Za-z_.-]+$", description="Grid code (GB/T 2260 + suffixes).")
    name: str = Field("", description="Display name.")
    level: GridLevel = Field(..., description="district | street | community | grid | micro_grid.")
    parent: str | None = Field(None, description="Code of the enclosing grid (only districts have none).")
    polygon: list[Point] | None = Field(
        None, min_length=3, description="Boundary as GeoJSON ring coordinates [[lon, lat], ...] (optional)."
    )
    overlaps: list[str] = Field(
        default_factory=list, description="Grid codes whose area this grid may overlap (otherwise an error)."
    )


class ChannelConfig(Strict):
    type: Literal["ws", "mqtt", "webhook", "wecom", "dingtalk", "feishu"] = Field(
        ..., description="ws (patrol page/dashboard), mqtt, webhook (JSON + HMAC), or a group robot."
    )
    url: str | None = Field(None, description="webhook / robot URL.")
    secret: SecretStr | None = Field(None, description="HMAC or robot signing secret (never logged).")

    @model_validator(mode="after")
    def _needs_url(self) -> ChannelConfig:
        if self.type in ("webhook", "wecom", "dingtalk", "feishu") and not self.url:
            raise ValueError(f"a {self.type} channel needs url")
        return self


class PersonConfig(Strict):
    """A grid worker, patrol member, department contact, duty leader or operator (or a team)."""

    id: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Stable id.")
    name: str = Field("", description="Display name.")
    roles: list[Role] = Field(..., min_length=1, description="What the person does (DESIGN.md roles).")
    grids: list[str] = Field(default_factory=list,
                             description="Grid codes served (their subtrees too). Empty = every grid.")
    department: str = Field("", description="department role: e.g. 城管, 消防, 公安, 生态环境.")
    phone: str = Field("", description="Shown to operators.")
    channels: list[ChannelConfig] = Field(default_factory=list, description="How tasks reach them.")
    token: SecretStr | None = Field(
        None, description="API bearer token acting as this person (patrol app, integrations); >= 16 chars."
    )

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token(cls, value: object) -> object:
        return None if value == "" else value  # token: ${VAR:-} with VAR unset = no token

    @model_validator(mode="after")
    def _token_length(self) -> PersonConfig:
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError(f"person {self.id!r}: token must be at least 16 characters")
        if "department" in self.roles and not self.department:
            raise ValueError(f"person {self.id!r} has role department but no department name")
        return self


class ClassPolicy(Strict):
    """Service levels of one incident class."""

    accept_s: float = Field(..., gt=0, description=(
        "Accept within this many seconds of dispatch, or escalate."))
    resolve_s: float = Field(..., gt=0, description=(
        "Resolve within this many seconds of opening, or supervise."))
    escalate_every_s: float | None = Field(
        None, gt=0, description="Still not accepted after an escalation: next level after this long "
        "(default accept_s).")


def _default_classes() -> dict[IncidentClass, ClassPolicy]:
    return {
        "general": ClassPolicy(accept_s=600, resolve_s=4 * 3600),
        "professional": ClassPolicy(accept_s=900, resolve_s=24 * 3600),
        "emergency": ClassPolicy(accept_s=120, resolve_s=3600),
    }


class ClassRule(Strict):
    """Alert kinds → class, department and title; first matching rule wins."""

    kinds: list[str] = Field(..., min_length=1, description='Alert kinds ("door_forced", "fall", "*" = any).')
    class_: IncidentClass = Field("general", alias="class", description="Class by day.")
    night_class: IncidentClass | None = Field(None, description="Class at night (default: same).")
    fused_class: IncidentClass | None = Field(
        None, description="Class when sensor and video evidence fuse (door + person on a linked camera).")
    department: str = Field("", description="Department for professional/emergency incidents.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _default_rules() -> list[ClassRule]:
    r = ClassRule.model_validate
    return [
        r({"kinds": ["door_forced", "intrusion_alarm"], "class": "professional", "night_class": "emergency",
           "department": "公安"}),
        r({"kinds": ["door_opened"], "class": "general", "fused_class": "professional",
           "department": "公安"}),
        r({"kinds": ["lock_failed_attempts"], "class": "general", "night_class": "professional",
           "department": "公安"}),
        r({"kinds": ["field_detection", "line_crossing"], "class": "general", "night_class": "professional",
           "department": "公安"}),
        r({"kinds": ["video_loss", "camera_offline", "uplink_down", "tamper"], "class": "professional",
           "department": "运维"}),
        r({"kinds": ["fall"], "class": "emergency", "department": "卫健"}),
        r({"kinds": ["crowd"], "class": "professional", "department": "公安"}),
        r({"kinds": ["*"], "class": "general"}),
    ]


class RepeatRaise(Strict):
    count: int = Field(3, ge=2, description="This many alerts on one incident ...")
    to: IncidentClass = Field("professional", description="... raise it to at least this class.")


class DispatchSection(Strict):
    classes: dict[IncidentClass, ClassPolicy] = Field(default_factory=_default_classes,
                                                      description="SLA per class.")
    rules: list[ClassRule] = Field(default_factory=_default_rules,
                                   description="Classification rules, in order.")
    repeat: RepeatRaise | None = Field(default_factory=RepeatRaise,
                                       description="Repeat count raises the class.")
    group_window_s: float = Field(
        60.0, ge=0, description="Alerts of one kind in one grid within this window fold into one incident "
        "(0 = off).")
    inhibit_window_s: float = Field(
        120.0, ge=0, description="Cameras behind one uplink/NVR going offline within this window fold into "
        "one incident.")
    backend: Literal["postgres", "nats"] = Field("postgres", description="Durable dispatch queue backend.")
    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server for backend nats.")
    workers: int = Field(4, ge=1, le=64, description="Concurrent deliveries.")
    max_attempts: int = Field(8, ge=1, le=100, description="Delivery attempts before the dead-letter list.")
    retry_base_s: float = Field(2.0, gt=0, description="First retry delay; doubles per attempt (jittered).")
    retry_max_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    lease_s: float = Field(30.0, gt=0, description="A delivery not finished in this time is retried.")
    timer_poll_s: float = Field(1.0, gt=0, description="How often SLA timers are checked.")
    public_url: str = Field("", description="Base URL of the hub's pages for links in notices.")

    @model_validator(mode="after")
    def _all_classes(self) -> DispatchSection:
        if missing := [c for c in CLASSES if c not in self.classes]:
            raise ValueError(f"dispatch.classes needs a policy for {missing}")
        return self


class SilenceConfig(Strict):
    """A maintenance window: alerts from the target are stored but open no incident."""

    grid: str | None = Field(None, description="Grid code (its subtree too).")
    source: str | None = Field(None, description="Camera or device id.")
    kinds: list[str] = Field(default_factory=list, description="Only these alert kinds (empty = all).")
    starts: datetime | None = Field(None, description="Start (ISO 8601; empty = now).")
    ends: datetime = Field(..., description="End (ISO 8601); a silence always expires.")
    reason: str = Field("", description="Why (shown to operators).")

    @model_validator(mode="after")
    def _target(self) -> SilenceConfig:
        if (self.grid is None) == (self.source is None):
            raise ValueError("a silence names exactly one of grid or source")
        return self


class DeviceConfig(Strict):
    id: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Stable device id.")
    name: str = Field("", description="Display name.")
    kind: Literal["door_contact", "smart_lock"] = Field(..., description="What the device is.")
    grid: str = Field("", description="Grid code the device belongs to.")
    topic: str = Field(..., description="MQTT topic the device publishes on.")
    dialect: Literal["zigbee2mqtt", "json", "tasmota"] = Field(
        "zigbee2mqtt",
        description="Payload dialect (Home Assistant discovery and mappings: sources: with kind mqtt).",
    )
    cameras: list[str] = Field(default_factory=list, description="Cameras that see this door.")
    ptz_on_alert: dict[str, str] = Field(
        default_factory=dict,
        description="Linked PTZ camera id -> preset (name or token) it turns to when this device raises an "
        "alert that no camera has confirmed yet.",
    )
    offline_after_s: float = Field(0, ge=0, description="Report offline after this much silence (0 = never).")
    location: tuple[float, float] | None = Field(
        None, description="(lon, lat): places the device in a grid when grid is empty."
    )
    lock: str | None = Field(
        None,
        description="door_contact only: id of the smart lock that secures this "
        "door. The door opening while that lock reports locked, with no successful "
        "unlock just before, is reported as door_forced.",
    )


class NightHours(Strict):
    start: str = Field("22:00", pattern=r"^\d{2}:\d{2}$", description="Night starts (local time).")
    end: str = Field("06:00", pattern=r"^\d{2}:\d{2}$", description="Night ends (local time).")


class AlertsSection(Strict):
    correlation_window_s: float = Field(
        30.0,
        gt=0,
        description="Door event and person on a linked camera within this many seconds become one incident.",
    )
    incident_quiet_s: float = Field(
        120.0,
        ge=0,
        description="Re-triggers within this time update the open incident instead of opening another.",
    )
    night: NightHours = Field(default_factory=NightHours)
    door_open_at_night: bool = Field(True, description="A door opened at night raises an alert.")
    held_open_s: float = Field(120, gt=0, description="Door held open this long raises an alert.")
    camera_offline_after_s: float = Field(
        60.0, ge=0, description="A camera offline this long raises a camera_offline alert (0 = never). "
        "Cameras behind one uplink or NVR fold into one uplink_down incident (dispatch.inhibit_window_s).")
