"""Detector backends behind one protocol; ``load_backend`` picks one from the config.

Optional runtimes (ultralytics/torch, onnxruntime) are imported only when their backend
is configured; a missing one raises :class:`hub.errors.DetectorError` with an install hint.
"""

from __future__ import annotations

from detectors.backends.base import DetectorBackend
from hub.config import BackendConfig, OnnxRuntimeBackend, OpenCvDnnBackend, UltralyticsBackend
from hub.errors import DetectorError

__all__ = ["DetectorBackend", "load_backend"]


def load_backend(cfg: BackendConfig) -> DetectorBackend:
    """Load the configured backend. Raises ModelNotFoundError for a missing model file."""
    if isinstance(cfg, OpenCvDnnBackend):
        from detectors.backends.opencv_dnn import OpenCvDnnDetector

        return OpenCvDnnDetector(cfg)
    if isinstance(cfg, UltralyticsBackend):
        from detectors.backends.ultralytics_backend import UltralyticsDetector

        return UltralyticsDetector(cfg)
    if isinstance(cfg, OnnxRuntimeBackend):
        from detectors.backends.onnxrt import OnnxRuntimeDetector

        return OnnxRuntimeDetector(cfg)
    raise DetectorError(f"unknown detector backend type: {getattr(cfg, 'type', cfg)!r}")
