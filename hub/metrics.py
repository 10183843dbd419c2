"""Prometheus metrics (one registry per hub so tests can run several hubs in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.frames_decoded = Counter("hub_frames_decoded_total", "Frames decoded", ["camera"], registry=r)
        self.frames_analysed = Counter("hub_frames_analysed_total", "Frames sent to the detector",
                                       ["camera"], registry=r)
        self.frames_gated = Counter("hub_frames_motion_skipped_total", "Frames skipped by motion gating",
                                    ["camera"], registry=r)
        self.frames_dropped = Counter("hub_frames_dropped_total", "Frames overwritten before analysis",
                                      ["camera"], registry=r)
        self.camera_online = Gauge("hub_camera_online", "1 if the camera stream is up", ["camera"],
                                   registry=r)
        self.inference_seconds = Histogram(
            "hub_inference_seconds", "Detector call latency", ["backend"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
        )
        self.batch_size = Histogram("hub_inference_batch_size", "Frames per inference call", registry=r,
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))
        self.alerts = Counter("hub_alerts_total", "Alerts raised", ["kind"], registry=r)
        self.incidents = Counter("hub_incidents_total", "Incidents opened", ["kind"], registry=r)
        self.latency = Histogram(
            "hub_capture_to_incident_seconds", "Frame capture to incident published", registry=r,
            buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
        )
        self.queue_depth = Gauge("hub_queue_depth", "Messages waiting per bus topic", ["topic"], registry=r)
        self.mqtt_messages = Counter("hub_mqtt_messages_total", "MQTT messages received", ["result"],
                                     registry=r)
        self.db_writes = Counter("hub_db_writes_total", "Rows written", ["table"], registry=r)
        self.deliveries = Counter("hub_deliveries_total", "Notice deliveries by outcome",
                                  ["channel", "outcome"], registry=r)
        self.transitions = Counter("hub_incident_transitions_total", "Incident transitions", ["action"],
                                   registry=r)
        self.kpi = Gauge("hub_kpi", "Closed-loop KPIs per grid for today (local time)", ["grid", "kpi"],
                         registry=r)
