"""The operator's browser as the camera: its tracks become the call's source and the far end gets the persona.

Three levels: the newest-wins hand-off on its own; an aiortc peer standing in for the operator's browser
(fast, no Chromium); and Chromium with a fake camera showing the operator's face as the operator (slow).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time

import aiohttp
import av
import cv2
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from benchmarks.identity import closer_to_persona
from calls.ice import rtc_configuration
from calls.operator_browser import BrowserSource, OneWayDelay
from calls.serve import ServeOptions, start_call
from tests.farend import join_for


class _CameraTrack(MediaStreamTrack):
    """A 30 fps 'camera' showing one face with a slight drift, as a browser would send it."""

    kind = "video"

    def __init__(self, image: np.ndarray) -> None:
        super().__init__()
        self._image = cv2.resize(image, (640, 480))
        self._n = 0
        self._t0 = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        self._n += 1
        await asyncio.sleep(max(0.0, self._t0 + self._n / 30 - time.monotonic()))
        dx = int(4 * np.sin(self._n / 10))
        frame = av.VideoFrame.from_ndarray(np.roll(self._image, dx, axis=1), format="bgr24")
        frame.pts, frame.time_base = self._n * 3000, fractions.Fraction(1, 90000)
        return frame


class _ToneTrack(MediaStreamTrack):
    """A 20 ms-packet 48 kHz tone, a 'microphone' that is never silent."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._t0 = time.monotonic()

    async def recv(self) -> av.AudioFrame:
        self._n += 1
        await asyncio.sleep(max(0.0, self._t0 + self._n * 0.02 - time.monotonic()))
        t = (np.arange(960) + self._n * 960) / 48000
        pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._n * 960, fractions.Fraction(1, 48000)
        return frame


async def _operator_peer(operator_url: str, image: np.ndarray) -> RTCPeerConnection:
    """What operator_camera.js does, in aiortc: send camera + mic, echo the relay's clock pings."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTrack(_CameraTrack(image))
    pc.addTrack(_ToneTrack())
    clock = pc.createDataChannel("clock")
    clock.on("message", lambda message: clock.send(message))
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as session:
        async with session.post(operator_url + "/camera/offer", json={"sdp": pc.localDescription.sdp,
                                                                      "type": "offer"}) as resp:
            assert resp.status == 200, await resp.text()
            await pc.setRemoteDescription(RTCSessionDescription(**await resp.json()))
    return pc


def test_slow_consumer_gets_the_newest_frame_not_a_backlog() -> None:
    """A conversion slower than the camera drops frames: what reaches the pipeline is always the newest."""
    got: list[tuple[int, float]] = []

    def slow(frame) -> None:
        got.append((int(frame.image[0, 0, 0]), frame.t_capture))
        time.sleep(0.05)

    source = BrowserSource(size=(64, 48)).start(slow, lambda chunk: None)
    try:
        for i in range(60):
            image = np.full((48, 64, 3), i, np.uint8)
            source._raw.put((av.VideoFrame.from_ndarray(image, format="bgr24"), float(i)))
            time.sleep(0.005)
        time.sleep(0.3)
    finally:
        source.stop()
    assert len(got) < 30, f"every frame was converted ({len(got)}): a backlog, not newest-wins"
    assert got[-1][0] == 59, "the last frame handed on must be the newest one"


def test_capture_time_is_arrival_minus_half_the_smallest_round_trip() -> None:
    delay = OneWayDelay()
    assert delay.seconds is None
    for rtt in (0.080, 0.030, 0.200):
        delay.add_rtt(rtt)
    assert delay.seconds == pytest.approx(0.015)
    source = BrowserSource()
    source.delay = delay
    assert source.capture_time(10.0) == pytest.approx(9.985)


async def test_wrong_operator_token_cannot_send_a_camera(demo_persona) -> None:
    source = BrowserSource()
    call = await start_call(demo_persona, source, ServeOptions(port=0))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(call.base_url + "/operator/wrong/camera/offer",
                                    json={"sdp": "v=0\r\nm=video 9 x\r\n", "type": "offer"}) as resp:
                assert resp.status == 403
            async with session.post(call.operator_url + "/camera/offer", json={"type": "answer"}) as resp:
                assert resp.status == 400
                assert "offer" in await resp.text()
            async with session.get(call.operator_url + "/camera") as resp:
                assert resp.status == 204  # the page shows its button
    finally:
        await call.stop()


async def test_a_call_with_a_local_source_offers_no_browser_camera(demo, demo_persona) -> None:
    from calls.sources import FileSource

    call = await start_call(demo_persona, FileSource(demo.operator_clip), ServeOptions(port=0))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(call.operator_url + "/camera") as resp:
                assert resp.status == 404  # the button stays hidden
    finally:
        await call.stop()


async def test_far_end_sees_persona_from_an_operator_browser_peer(demo, demo_persona) -> None:
    """An aiortc peer as the operator's browser: the far end receives the converted face and a voice."""
    operator_face = cv2.imread(str(demo.operator_photo))
    source = BrowserSource()
    call = await start_call(demo_persona, source, ServeOptions(port=0))
    frames, audio = [], []
    try:
        assert source.error is not None, "before the browser connects the operator is told what to press"
        pc = await _operator_peer(call.operator_url, operator_face)
        try:
            deadline = time.monotonic() + 20
            while source.frames_in < 15 and time.monotonic() < deadline:  # the operator's link is up
                await asyncio.sleep(0.1)
            await join_for(call.join_url, 6.0, on_video=lambda f: frames.append(f.to_ndarray(format="bgr24")),
                           on_audio=lambda f: audio.append(f.to_ndarray().astype(np.float32).reshape(-1) / 32768))
            one_way = source.delay.seconds
            error = source.error
            arrived = source.frames_in
        finally:
            await pc.close()
    finally:
        await call.stop()
    assert error is None, error
    assert arrived > 30, f"only {arrived} frames came from the operator's browser"
    assert one_way is not None and 0 <= one_way < 0.5, f"one-way delay not measured: {one_way}"
    # How many frames arrive depends on how busy the cores are (the sender, relay and far end share them here):
    # the check is that a stream came through and that what came shows the persona.
    assert len(frames) >= 10, f"the far end received {len(frames)} frames"
    faced, closer = closer_to_persona(frames[-20::2], demo_persona.photo, operator_face)
    assert faced >= 3 and closer / faced >= 0.9, f"{closer}/{faced} received frames look like the persona"
    rms = float(np.sqrt(np.mean(np.concatenate(audio[-100:]) ** 2)))
    assert rms > 0.01, f"far end audio is silent (rms {rms:.4f})"


@pytest.mark.slow
async def test_chromium_with_a_fake_camera_as_the_operator(demo, demo_persona, tmp_path) -> None:
    """End to end with only a browser on the operator's side: Chromium's fake camera shows the operator's
    face, the operator presses the button, and the far end receives the persona converted from it."""
    from benchmarks.browser import DESKTOP, devtools_page, require_chromium, write_y4m

    require_chromium()
    operator_face = cv2.imread(str(demo.operator_photo))
    camera = write_y4m(tmp_path / "operator.y4m", operator_face, seconds=2.0, size=(640, 480))
    source = BrowserSource()
    call = await start_call(demo_persona, source, ServeOptions(port=0))
    frames, audio = [], []
    try:
        async with devtools_page(call.operator_url, DESKTOP, video=camera) as (page, browser):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not await page.evaluate(  # shown once the route answers
                    "!!document.getElementById('use-camera') && !document.getElementById('use-camera').hidden"):
                await asyncio.sleep(0.2)
            await page.tap("#use-camera")
            while time.monotonic() < deadline and source.frames_in < 30:
                await asyncio.sleep(0.2)
            state = await page.evaluate("document.getElementById('camera-state').textContent")
            assert source.frames_in >= 30, f"no camera frames from Chromium (page says {state!r}); " \
                                           f"log: {browser.log_tail()}"
            await join_for(call.join_url, 5.0, on_video=lambda f: frames.append(f.to_ndarray(format="bgr24")),
                           on_audio=lambda f: audio.append(f.to_ndarray().astype(np.float32).reshape(-1) / 32768))
            one_way = source.delay.seconds
            state = await page.evaluate("document.getElementById('camera-state').textContent")
    finally:
        await call.stop()
    assert "source" in state, state
    assert one_way is not None, "the page never echoed the relay's clock"
    # How many frames arrive depends on how busy the cores are (the sender, relay and far end share them here):
    # the check is that a stream came through and that what came shows the persona.
    assert len(frames) >= 10, f"the far end received {len(frames)} frames"
    faced, closer = closer_to_persona(frames[-20::2], demo_persona.photo, operator_face)
    assert faced >= 3 and closer / faced >= 0.9, f"{closer}/{faced} received frames look like the persona"
    rms = float(np.sqrt(np.mean(np.concatenate(audio[-100:]) ** 2)))
    assert rms > 0.005, f"far end audio is silent (rms {rms:.4f}): Chromium's fake microphone beeps"


def test_clock_echo_message_is_plain_json() -> None:
    """The page echoes the ping verbatim; garbage from it is ignored, never raised."""
    source = BrowserSource()
    source._on_echo("not json")
    source._on_echo(json.dumps({"t": "x"}))
    assert source.delay.seconds is None
