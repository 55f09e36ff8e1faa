"""The operator's browser as the call's camera and microphone: an operator needs nothing installed.

The operator page (calls/static/operator_camera.js) sends its camera and microphone to the relay over
WebRTC; `BrowserSource` turns the arriving tracks into the same capture-stamped `VideoFrame`s and
`AudioChunk`s a local webcam gives, so the rest of the call does not know the difference.

Why the frames are handed on the way they are:
- aiortc's remote track feeds an unbounded queue; the event loop only pulls decoded frames from it and puts
  them in a newest-wins slot, and one worker thread converts the newest to BGR and scales it. A slow
  conversion drops frames instead of building delay (DESIGN.md: "keep newest-wins").
- The capture time of a frame is its arrival time minus the measured one-way delay: the relay pings the page
  over a data channel ("clock") every second and takes half the smallest recent round trip. Until the first
  echo comes back, the arrival time is used as it is.

Routes (registered on the call's server by `attach`, so they exist only in a call started with
`--source browser`; the operator page shows its button only when the first answers):
  GET  /operator/{token}/camera         204
  POST /operator/{token}/camera/offer   the operator page's SDP offer in, the answer out
The same operator token, Origin check, body limits and offer schema as the rest of the operator's routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from typing import Any

import av
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from calls import schema
from calls.ice import rtc_configuration
from calls.sources import CALL_SIZE, OnAudio, OnVideo, Source, fit_frame
from calls.tracks import frame_to_mono
from engine.errors import DeviceError
from engine.media import AudioChunk, VideoFrame, now
from engine.pipeline import AUDIO_RATE
from engine.stages import LatestSlot

log = logging.getLogger(__name__)
PING_INTERVAL_S = 1.0
RTT_WINDOW = 10  # the smallest of the last ten round trips: queueing only ever adds to one


class OneWayDelay:
    """Half the smallest recent round trip of the page's clock echo, in seconds (None until measured)."""

    def __init__(self, window: int = RTT_WINDOW) -> None:
        self._rtts: deque[float] = deque(maxlen=window)

    def add_rtt(self, rtt_s: float) -> None:
        if 0.0 <= rtt_s < 10.0:
            self._rtts.append(rtt_s)

    @property
    def seconds(self) -> float | None:
        return min(self._rtts) / 2 if self._rtts else None


class BrowserSource(Source):
    """The call's source fed by the operator browser's WebRTC tracks (see the module's notes)."""

    def __init__(self, size: tuple[int, int] = CALL_SIZE) -> None:
        super().__init__()
        self.size = size
        self.delay = OneWayDelay()
        self.peer: RTCPeerConnection | None = None
        self.frames_in = 0  # decoded video frames that arrived (whether or not converted)
        self._raw: LatestSlot[tuple[av.VideoFrame, float]] = LatestSlot()
        self._on_video: OnVideo | None = None
        self._on_audio: OnAudio | None = None
        self._tasks: list[asyncio.Task] = []
        self._lock = threading.Lock()

    # -- Source --------------------------------------------------------------------------------------
    def start(self, on_video: OnVideo, on_audio: OnAudio) -> "BrowserSource":
        self._on_video, self._on_audio = on_video, on_audio
        self.error = DeviceError("waiting for the operator's browser: press \"Use this browser's camera and "
                                 "microphone\" on the operator page")
        self._spawn(self._convert, "evercall-browser-camera")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._raw.close()
        for task in self._tasks:
            task.cancel()
        super().stop()

    def capture_time(self, arrival: float) -> float:
        """When the browser captured what arrived at `arrival` (monotonic seconds)."""
        one_way = self.delay.seconds
        return arrival - one_way if one_way is not None else arrival

    def _convert(self) -> None:
        """Worker thread: the newest decoded frame to BGR at the call's size, stamped, to the pipeline."""
        seq = 0
        while not self._stop.is_set():
            item = self._raw.get(timeout=0.5)
            if item is None:
                continue
            frame, t_capture = item
            image = fit_frame(frame.to_ndarray(format="bgr24"), self.size)
            if self._on_video is not None:
                self._on_video(VideoFrame(image, t_capture, seq))
            seq += 1

    # -- WebRTC --------------------------------------------------------------------------------------
    async def _pull_video(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames_in += 1
                self._raw.put((frame, self.capture_time(now())))
        except MediaStreamError:
            return

    async def _pull_audio(self, track) -> None:
        seq = 0
        try:
            while True:
                frame = await track.recv()
                samples = frame_to_mono(frame)
                if frame.sample_rate != AUDIO_RATE:  # Opus decodes at 48 kHz; anything else is resampled
                    import soxr

                    samples = soxr.resample(samples, frame.sample_rate, AUDIO_RATE).astype("float32")
                arrival = now() - len(samples) / AUDIO_RATE  # the chunk's first sample
                if self._on_audio is not None:
                    self._on_audio(AudioChunk(samples, AUDIO_RATE, self.capture_time(arrival), seq))
                seq += 1
        except MediaStreamError:
            return

    async def _ping(self, channel) -> None:
        """Send the relay's clock every second; the page echoes it back (see `_on_echo`)."""
        try:
            while channel.readyState == "open":
                channel.send(json.dumps({"t": now()}))
                await asyncio.sleep(PING_INTERVAL_S)
        except Exception:  # the channel closed between the check and the send
            return

    def _on_echo(self, message: Any) -> None:
        try:
            sent = json.loads(message)["t"]
        except (ValueError, TypeError, KeyError):
            return
        if isinstance(sent, (int, float)) and not isinstance(sent, bool):
            self.delay.add_rtt(now() - float(sent))

    async def accept(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Answer the operator page's offer; a new offer replaces the connection before it."""
        await self.close_peer()
        pc = RTCPeerConnection(rtc_configuration())
        self.peer = pc

        @pc.on("track")
        def on_track(track) -> None:
            pull = self._pull_video if track.kind == "video" else self._pull_audio
            self._tasks.append(asyncio.ensure_future(pull(track)))

        @pc.on("datachannel")
        def on_channel(channel) -> None:
            if channel.label != "clock":
                return
            channel.on("message", self._on_echo)
            self._tasks.append(asyncio.ensure_future(self._ping(channel)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("operator browser: %s", pc.connectionState)
            if pc is not self.peer:
                return
            if pc.connectionState == "connected":
                self.error = None
            elif pc.connectionState in ("failed", "closed"):
                self.error = DeviceError("the operator's browser camera disconnected: press \"Use this "
                                         "browser's camera and microphone\" again")
                if pc.connectionState == "failed":
                    await pc.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            await self.close_peer()
            raise
        return pc.localDescription

    async def close_peer(self) -> None:
        pc, self.peer = self.peer, None
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if pc is not None:
            await pc.close()

    # -- the operator's route ------------------------------------------------------------------------
    def attach(self, server: Any) -> None:
        """Register the camera route on a calls.server.CallServer (before its app is started)."""
        async def camera_offer(request: web.Request) -> web.Response:
            if (refusal := server._operator_refusal(request)) is not None:
                return refusal
            try:
                sdp, kind = schema.offer(await server._body(request, "the offer", schema.MAX_OFFER_BYTES))
            except schema.BadMessage as exc:
                return web.Response(status=400, text=f"bad offer: {exc}\n")
            try:
                answer = await self.accept(sdp, kind)
            except Exception as exc:
                reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
                return web.Response(status=400, text=f"cannot use this offer: {reason}\n")
            return web.json_response({"sdp": answer.sdp, "type": answer.type})

        async def camera_here(request: web.Request) -> web.Response:
            """204: this call takes its source from the operator's browser (the page shows its button)."""
            if (refusal := server._operator_refusal(request)) is not None:
                return refusal
            return web.Response(status=204)

        async def close(app: web.Application) -> None:
            await self.close_peer()

        server.app.router.add_get("/operator/{token}/camera", camera_here)
        server.app.router.add_post("/operator/{token}/camera/offer", camera_offer)
        server.app.on_shutdown.append(close)
