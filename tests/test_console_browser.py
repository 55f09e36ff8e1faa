"""An operator in Chromium: the console shows live figures and its buttons change what the far end gets.

Chromium is driven over its DevTools protocol (a WebSocket that aiohttp speaks), so no driver is needed:
the test clicks the console's real buttons and checks the call's state on the server.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from calls.console import one_moment_card
from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from benchmarks.browser import chromium, require_chromium
from tests.waiting import until_async as _until


PREVIEW_RECT = """(() => { const r = document.querySelector('img[alt="outgoing picture"]').getBoundingClientRect();
    return [r.left, r.top, r.width, r.height, window.devicePixelRatio]; })()"""


def _card_difference(png: bytes, rect: list[float]) -> float:
    """Mean grey-level difference between the screenshot's preview area and the 'one moment' card."""
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    left, top, width, height, scale = rect
    x0, y0, x1, y1 = (int(round(v * scale)) for v in (left, top, left + width, top + height))
    shown = shot[y0:y1, x0:x1]
    if shown.size == 0 or width < 50:
        return float("inf")
    card = cv2.resize(one_moment_card(640, 480), (shown.shape[1], shown.shape[0]), interpolation=cv2.INTER_AREA)
    return float(np.abs(shown.astype(int) - card.astype(int)).mean())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """Just enough of the DevTools protocol: evaluate JavaScript, take a screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            reply = json.loads((await self._ws.receive()).data)
            if reply.get("id") == msg_id:
                return reply.get("result", {})

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 15.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"the page never satisfied: {expression}")


async def _page_socket(session: aiohttp.ClientSession, port: int) -> str:
    for _ in range(100):
        try:
            async with session.get(f"http://127.0.0.1:{port}/json") as resp:
                pages = [t for t in await resp.json() if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("Chromium's DevTools endpoint never came up")


@pytest.mark.slow
@pytest.mark.realtime
async def test_operator_console_in_chromium(demo, demo_persona, tmp_path: Path) -> None:
    require_chromium()
    call = await start_call(demo_persona, FileSource(demo.operator_clip), ServeOptions(port=0))
    pipeline = call.state.pipeline
    port = _free_port()
    try:
        with chromium(call.operator_url, extra_args=(f"--remote-debugging-port={port}",
                                                     "--remote-allow-origins=*", "--window-size=1280,1000")):
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(await _page_socket(session, port), max_msg_size=0) as ws:
                    page = DevTools(ws)
                    text = await page.until("document.getElementById('figures').innerText")
                    for label in ("A/V skew", "frames out", "CPU", "voice send delay"):
                        assert label in text
                    await page.until("document.querySelector('img[alt=\"outgoing picture\"]').naturalWidth > 0")

                    await page.js("document.getElementById('mute').click()")
                    assert await _until(lambda: pipeline.muted), "the Mute button mutes the persona's voice"
                    await page.until("document.getElementById('mute').textContent === 'Unmute voice'")
                    await page.js("document.getElementById('mute').click()")
                    assert await _until(lambda: not pipeline.muted), "pressed again, it gives the voice back"
                    await page.until("document.getElementById('mute').textContent === 'Mute voice'")

                    await page.js("document.getElementById('card').click()")
                    assert await _until(lambda: pipeline.card is not None), "the card button replaces the picture"

                    # The operator's own view of what the far end sees: pixels of the page, not the file size.
                    async def preview_shows_card() -> float:
                        shot = await page.call("Page.captureScreenshot", format="png")
                        png = base64.b64decode(shot["data"])
                        (tmp_path / "console.png").write_bytes(png)
                        return _card_difference(png, await page.js(PREVIEW_RECT))
                    difference = await preview_shows_card()
                    for _ in range(30):
                        if difference < 12:
                            break
                        await asyncio.sleep(0.2)
                        difference = await preview_shows_card()
                    assert difference < 12, f"the console's preview should show the card ({difference:.1f} grey levels off)"
    finally:
        await call.stop()
