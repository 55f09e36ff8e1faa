"""An aiortc far end for tests: joins a relay's /join/ link receive-only and hands each frame to callbacks."""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from calls.ice import rtc_configuration


async def join_for(url: str, seconds: float, on_video: Optional[Callable] = None,
                   on_audio: Optional[Callable] = None) -> dict:
    """Join, call `on_video(frame)` / `on_audio(frame)` with every decoded av frame for `seconds`, hang up.

    Returns {"state": the connection state before hanging up, "answer_sdp": the relay's answer}."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tasks = []

    @pc.on("track")
    def on_track(track) -> None:
        handler = on_video if track.kind == "video" else on_audio

        async def pull() -> None:
            while True:
                frame = await track.recv()
                if handler is not None:
                    handler(frame)
        tasks.append(asyncio.ensure_future(pull()))

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/offer", json={"sdp": pc.localDescription.sdp,
                                                      "type": pc.localDescription.type}) as resp:
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await asyncio.sleep(seconds)
    state = pc.connectionState
    for task in tasks:
        task.cancel()
    await pc.close()
    return {"state": state, "answer_sdp": answer["sdp"]}


def count_frames_sent(pipeline) -> list[int]:
    """From now on, count the fresh frames the relay's outgoing video track sends (read `counter[0]`).

    What this machine's relay managed to send is the yardstick for what a far end should have received:
    a busy machine sends fewer frames, and a test must not blame the transport for that."""
    counter = [0]
    note = pipeline.note_video_sent

    def counted(t_capture: float) -> None:
        counter[0] += 1
        note(t_capture)
    pipeline.note_video_sent = counted
    return counter


async def offer_sdp() -> tuple[RTCPeerConnection, dict]:
    """A far end's receive-only video offer, as the /offer route takes it: (its peer connection, the body)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
