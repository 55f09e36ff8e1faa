"""The operator console: figures arrive over the WebSocket and its controls change what the far end gets."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from calls.console import one_moment_card
from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from tests.waiting import until_async as _until


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10.0) -> dict:
    async def wait() -> dict:
        while True:
            msg = await ws.receive_json()
            if msg.get("type") == kind:
                return msg
    return await asyncio.wait_for(wait(), timeout)


async def _far_end_loudness(pipeline, seconds: float) -> list[float]:
    """RMS of each 50 ms block of the voice the far end would be sent over the next `seconds`."""
    rate = pipeline.audio_out.sample_rate
    block, levels = rate // 20, []
    for _ in range(int(seconds * 20)):
        got = await asyncio.to_thread(pipeline.audio_out.take, block, 1.0)
        if got is not None:
            levels.append(float(np.sqrt(np.mean(got[0] ** 2))))
    return levels


@pytest.mark.realtime
async def test_console_figures_and_controls(demo, demo_persona) -> None:
    call = await start_call(demo_persona, FileSource(demo.operator_clip), ServeOptions(port=0))
    pipeline = call.state.pipeline
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{call.base_url}/operator/wrong/ws")
            assert refused.value.status == 403
            async with session.ws_connect(f"{call.operator_url}/ws") as ws:
                figures = await _next(ws, "figures")
                for key in ("av", "fps_out", "cpu_percent", "face", "invite", "muted", "card"):
                    assert key in figures

                await ws.send_json({"action": "mute", "on": True})
                assert (await _next(ws, "result"))["ok"] and pipeline.muted
                await _far_end_loudness(pipeline, 0.5)  # what was converted before the click drains
                muted = await _far_end_loudness(pipeline, 1.0)
                assert muted and max(muted) < 0.003, f"muted: the far end hears nothing ({max(muted):.4f})"
                assert (await _next(ws, "figures"))["muted"] is True
                await ws.send_json({"action": "mute", "on": False})
                assert (await _next(ws, "result"))["ok"] and not pipeline.muted
                heard = await _far_end_loudness(pipeline, 3.0)
                assert max(heard) > 0.03, f"unmuted: the far end hears the voice again ({max(heard):.4f})"
                assert (await _next(ws, "figures"))["muted"] is False

                await ws.send_json({"action": "card", "on": True})
                assert (await _next(ws, "result"))["ok"]
                def shows_card() -> bool:  # frames converted before the click drain through the A/V delay line
                    frame = pipeline.video_out.peek()[1]
                    card = one_moment_card(*frame.image.shape[1::-1])
                    return bool(np.abs(frame.image.astype(int) - card).mean() < 3)
                assert await _until(shows_card), "the far end sees the card"
                assert (await _next(ws, "figures"))["card"] is True

                await ws.send_json({"action": "card", "on": False})
                await _next(ws, "result")
                await ws.send_json({"action": "mode", "mode": "portrait"})
                result = await _next(ws, "result", timeout=20)
                assert result["ok"], result
                assert (await _next(ws, "figures"))["mode"] == "portrait"

                await ws.send_json({"action": "mode", "mode": "no-such-mode"})
                result = await _next(ws, "result")
                assert not result["ok"] and "no-such-mode" in result["message"]

                await ws.send_json({"action": "end"})
                assert (await _next(ws, "result"))["message"] == "call ended"
                await asyncio.wait_for(call.ended.wait(), 2.0)
            async with session.get(call.join_url) as resp:
                assert resp.status == 403, "an ended call's link no longer works"
    finally:
        await call.stop()
