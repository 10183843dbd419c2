"""The dashboard in a real browser: Debian's chromium driven by Playwright for Python.

Needs the Debian package ``chromium`` (``/usr/bin/chromium``) and the PyPI package
``playwright`` (never ``playwright install``: no browser downloads). The server is a real
``create_app`` behind aiohttp's TestServer, fed by the in-memory runtime stand-in of
test_web.py (real frames of bus.jpg, real SSD-MobileNet detections).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from hub.web import create_app
from tests.hub.test_web import MemoryView, Scene, animate, make_incident, make_view, scene

__all__ = ["scene"]  # the module-scoped fixture, re-exported for pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
SCREENSHOT = Path(os.environ.get("HUB_DASHBOARD_SCREENSHOT", "")) if os.environ.get(
    "HUB_DASHBOARD_SCREENSHOT") else None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert os.access(CHROMIUM, os.X_OK), "install the Debian package: apt-get install -y chromium"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def live_hub(tmp_path: Path, scene: Scene) -> AsyncIterator[tuple[MemoryView, TestServer]]:
    view = make_view(tmp_path, scene, kpi_interval_s=0.2)
    ok, jpg = cv2.imencode(".jpg", scene.image)
    assert ok
    for n in (1, 2, 3, 9):
        (view.evidence_dir / f"inc{n}.jpg").write_bytes(jpg.tobytes())
    stop = asyncio.Event()
    camera = asyncio.create_task(animate(view, scene, "gate", 0.1, stop))
    server = TestServer(create_app(view))
    await server.start_server()
    try:
        yield view, server
    finally:
        stop.set()
        await camera
        await server.close()


async def text(page: Page, selector: str) -> str:
    return (await page.locator(selector).first.text_content() or "").strip()


async def test_dashboard_tiles_and_live_incident(browser: Browser,
                                                 live_hub: tuple[MemoryView, TestServer]) -> None:
    view, server = live_hub
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    # MJPEG <img> never finishes loading, so wait for the DOM and the app's own ready flag
    await page.goto(str(server.make_url("/")), wait_until="domcontentloaded")
    await page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    # camera tiles: one per camera, status badges, the live MJPEG actually painting frames
    tiles = page.locator(".tile")
    assert await tiles.count() == 2
    gate = page.locator(".tile[data-camera-id='gate']")
    lobby = page.locator(".tile[data-camera-id='lobby']")
    assert await gate.locator(".badge").get_attribute("class") == "badge online"
    assert await lobby.locator(".badge").get_attribute("class") == "badge offline"
    assert await text(page, ".tile[data-camera-id='gate'] .cam-name") == "北门 North gate"
    await page.wait_for_function(
        "() => { const i = document.querySelector(\".tile[data-camera-id='gate'] img\");"
        " return i && i.naturalWidth === 640; }", timeout=5_000)
    assert "nosignal" not in (await gate.get_attribute("class") or "")
    assert "nosignal" in (await lobby.get_attribute("class") or "")  # no frame yet from the lobby

    # KPI header and the initial feed, newest first
    await page.wait_for_selector("#conn.up", timeout=5_000)
    assert await text(page, "#kpi-cameras .v") == "1"
    assert await text(page, "#kpi-cameras .t") == "2"
    ids = await page.locator("#feed .incident").evaluate_all("els => els.map(e => e.dataset.incidentId)")
    assert ids == ["inc3", "inc2", "inc1"]

    # a new emergency on the bus shows up at the top of the feed within 1 s
    incident: dict[str, Any] = make_incident(9, cls="emergency", opened_at=time.time())
    incident["title"] = "夜间强行开门 Door forced at night"
    view.incidents["inc9"] = incident
    t0 = time.monotonic()
    view.bus.publish("incident", incident)
    await page.wait_for_selector("#feed .incident[data-incident-id='inc9']", timeout=1_000)
    latency = time.monotonic() - t0
    assert latency < 1.0, f"incident took {latency:.2f} s to appear"
    first = page.locator("#feed .incident").first
    assert await first.get_attribute("data-incident-id") == "inc9"
    assert "cls-emergency" in (await first.get_attribute("class") or "")
    assert await first.locator(".inc-title").text_content() == "夜间强行开门 Door forced at night"
    assert await first.locator(".inc-class").text_content() == "应急"
    assert await first.locator(".inc-state").text_content() == "接收登记"
    assert await first.locator(".inc-grid").text_content() == "440106001001"
    colour = await first.evaluate("e => getComputedStyle(e).borderLeftColor")
    assert colour == "rgb(255, 59, 59)", colour  # emergency red
    await page.wait_for_function(  # evidence thumbnail loaded from /evidence/inc9.jpg
        "() => { const i = document.querySelector(\"#feed .incident[data-incident-id='inc9'] img\");"
        " return i && i.complete && i.naturalWidth === 640; }", timeout=3_000)
    # the server's KPI message counts it (open incidents 3, emergencies 2)
    await page.wait_for_function("() => document.querySelector('#kpi-open .v').textContent === '3'",
                                 timeout=2_000)
    assert await text(page, "#kpi-emergency .v") == "2"

    # an operator action from the feed goes through the API and updates the card
    await first.locator("button[data-action='accept']").click()
    await page.wait_for_selector("#feed .incident[data-incident-id='inc9'][data-state='accepted']",
                                 timeout=2_000)
    assert view.incidents["inc9"]["state"] == "accepted"

    # the language toggle switches to English
    await page.click("#lang")
    assert await text(page, "#kpi-open + .kpi-label, #kpi-open .kpi-label") == "Open incidents"
    if SCREENSHOT is not None:
        await page.screenshot(path=str(SCREENSHOT))
    assert failed == [], failed
    assert errors == [], errors
    await page.close()
