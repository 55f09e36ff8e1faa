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

from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from tests.browser import chromium, require_chromium


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
                    for _ in range(50):
                        if pipeline.muted:
                            break
                        await asyncio.sleep(0.1)
                    assert pipeline.muted, "the Mute button mutes the persona's voice"
                    await page.until("document.getElementById('mute').textContent === 'Unmute voice'")

                    await page.js("document.getElementById('card').click()")
                    for _ in range(50):
                        if pipeline.card is not None:
                            break
                        await asyncio.sleep(0.1)
                    assert pipeline.card is not None, "the card button replaces the picture"

                    shot = await page.call("Page.captureScreenshot", format="png")
                    (tmp_path / "console.png").write_bytes(base64.b64decode(shot["data"]))
                    assert (tmp_path / "console.png").stat().st_size > 10_000
    finally:
        await call.stop()
