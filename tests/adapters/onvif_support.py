"""Shared by the ONVIF adapter tests: a real RTSP server (module scope), the emulated camera whose
stream URIs point at it, adapter configs for it, and :class:`EventTap` to watch ``events()``.

Test modules take the fixtures by assignment (``device = onvif_support.device``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from adapters.onvif import OnvifCamera
from adapters.registry import create
from hub.events import SourceEvent
from tests.support.media import make_test_clip
from tests.support.onvif_device import OnvifDevice
from tests.support.rtsp import RtspServer

USER = "operator"
PASSWORD = "0nvif-S3cret!"  # ONVIF and RTSP share the account, as on real cameras
SKEW_S = 2 * 3600.0  # the emulated camera's clock is two hours fast

MOTION = "tns1:RuleEngine/CellMotionDetector/Motion"
TAMPER = "tns1:VideoSource/GlobalSceneChange/ImagingService"
LINE = "tns1:RuleEngine/LineDetector/Crossed"
FIELD = "tns1:RuleEngine/FieldDetector/ObjectsInside"
VIDEO_LOSS = "tns1:VideoSource/SignalLoss"


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    clips = tmp_path_factory.mktemp("onvif-clips")
    main = make_test_clip(clips / "main720.mp4", 2.0, 1280, 720, 25)
    sub = make_test_clip(clips / "sub360.mp4", 2.0, 640, 360, 25)
    with RtspServer({"main": main, "sub": sub}, user=USER, password=PASSWORD) as server:
        yield server


@pytest.fixture
async def device(rtsp: RtspServer) -> AsyncIterator[OnvifDevice]:
    main, sub = rtsp.url("main", credentials=False), rtsp.url("sub", credentials=False)
    device = OnvifDevice(main_url=main, sub_url=sub, username=USER, password=PASSWORD, clock_skew_s=SKEW_S)
    async with device as dev:
        yield dev


def config(dev: OnvifDevice, **overrides: Any) -> dict[str, Any]:
    return {"kind": "onvif", "id": "gate-cam", "name": "北门", "grid": "440105001001", "host": dev.host,
            "port": dev.port, "username": USER, "password": PASSWORD, **overrides}


def camera(dev: OnvifDevice, **overrides: Any) -> OnvifCamera:
    adapter = create(config(dev, **overrides))
    assert isinstance(adapter, OnvifCamera)
    return adapter


class EventTap:
    """Runs ``adapter.events()`` in a task; ``await tap.next()`` returns the next event."""

    def __init__(self, adapter: OnvifCamera) -> None:
        self.adapter = adapter
        self.queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for event in self.adapter.events():
            self.queue.put_nowait(event)

    async def __aenter__(self) -> EventTap:
        self.task = asyncio.create_task(self._run(), name="onvif-event-tap")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def subscribed(self, dev: OnvifDevice, count: int = 1, within: float = 10.0) -> None:
        """Wait until the adapter holds ``count`` subscriptions in total and one is live on the device."""
        deadline = time.monotonic() + within
        while not (dev.subscriptions and dev.calls["CreatePullPointSubscription"] >= count):
            assert time.monotonic() < deadline, f"no subscription #{count} within {within} s"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # let the first PullMessages reach the device

    async def next(self, within: float = 5.0) -> SourceEvent:
        return await asyncio.wait_for(self.queue.get(), within)

    async def nothing(self, for_s: float = 0.5) -> None:
        await asyncio.sleep(for_s)
        assert self.queue.empty(), f"unexpected event {self.queue.get_nowait()}"
