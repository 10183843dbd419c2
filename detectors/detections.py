"""Columnar detections (numpy arrays), the currency of detectors/.

Follows supervision's design: boolean-mask indexing returns a new ``Detections``;
converters live with their backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class Detections:
    xyxy: FloatArray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: FloatArray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: IntArray = field(default_factory=lambda: np.zeros((0,), np.int64))
    tracker_id: IntArray = field(default_factory=lambda: np.zeros((0,), np.int64))
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(n, 4)
        self.confidence = np.asarray(self.confidence, np.float32).reshape(n)
        self.class_id = np.asarray(self.class_id, np.int64).reshape(n)
        if len(self.tracker_id) != n:
            self.tracker_id = np.full(n, -1, np.int64)
        else:
            self.tracker_id = np.asarray(self.tracker_id, np.int64).reshape(n)
        if len(self.labels) != n:
            self.labels = tuple(str(c) for c in self.class_id)

    @classmethod
    def empty(cls) -> Detections:
        return cls()

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Detections:
        idx = np.nonzero(mask)[0] if mask.dtype == np.bool_ else mask
        return Detections(
            xyxy=self.xyxy[idx],
            confidence=self.confidence[idx],
            class_id=self.class_id[idx],
            tracker_id=self.tracker_id[idx],
            labels=tuple(self.labels[i] for i in idx),
        )

    def with_label(self, *labels: str) -> Detections:
        wanted = set(labels)
        return self[np.array([lab in wanted for lab in self.labels], dtype=bool)]

    @property
    def bottom_center(self) -> FloatArray:
        """Anchor points (x, y) at the feet of each box, used by zone rules."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)

    def scaled(self, sx: float, sy: float) -> Detections:
        xyxy = self.xyxy * np.array([sx, sy, sx, sy], np.float32)
        return Detections(xyxy, self.confidence, self.class_id, self.tracker_id, self.labels)

    @staticmethod
    def merge(parts: list[Detections]) -> Detections:
        if not parts:
            return Detections()
        return Detections(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            tracker_id=np.concatenate([p.tracker_id for p in parts]),
            labels=tuple(lab for p in parts for lab in p.labels),
        )

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "box": [round(float(v), 1) for v in self.xyxy[i]],
                "confidence": round(float(self.confidence[i]), 3),
                "label": self.labels[i],
                "track_id": int(self.tracker_id[i]),
            }
            for i in range(len(self))
        ]
