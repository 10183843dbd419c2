"""EvidenceStore: JPEG snapshots with boxes from a real image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from alerts.evidence import EvidenceStore
from tests.alerts.helpers import PEOPLE, FrameSlots


async def test_snapshot_writes_jpeg_with_boxes(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence", FrameSlots(["cam1"]))
    box = tuple(float(v) for v in PEOPLE[0])
    url = await store.snapshot("cam1", highlight_box=box)  # type: ignore[arg-type]
    assert url is not None
    assert url.startswith("/evidence/")
    assert url.endswith(".jpg")
    path = store.path_for(url)
    assert path is not None
    assert path.exists()
    img = cv2.imread(str(path))
    assert img is not None
    assert img.shape == (1080, 810, 3)
    # the highlight box edge is drawn red (BGR ~ (40, 40, 230)) on the left edge of person 0
    x1, y1, _, y2 = (int(v) for v in PEOPLE[0])
    edge = img[(y1 + y2) // 2, x1].astype(int)
    assert edge[2] > 150
    assert edge[0] < 110
    assert edge[1] < 110
    # the plain detection box of person 2 is green
    gx1, gy1, _, gy2 = (int(v) for v in PEOPLE[2])
    green = img[(gy1 + gy2) // 2, gx1].astype(int)
    assert green[1] > 150
    assert green[2] < 140
    assert store.written == 1
    assert [p.name for p in (tmp_path / "evidence").iterdir()] == [path.name]  # no temp files left


async def test_no_frame_means_no_snapshot(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, FrameSlots([]))
    assert await store.snapshot("cam-missing") is None
    assert store.written == 0
    assert store.path_for("/evidence/0123456789abcdef.jpg") is not None


def test_path_for_rejects_other_names(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, FrameSlots([]))
    assert store.path_for("/evidence/../../etc/passwd") is None
    assert store.path_for("/evidence/abc.png") is None
    good = "0123456789abcdef0123.jpg"
    assert store.path_for(f"/evidence/{good}") == tmp_path / good
    assert np.all(PEOPLE[:, 2] > PEOPLE[:, 0])
