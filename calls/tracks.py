"""aiortc tracks: the persona's video and audio going out, and the far end's media coming in.

`recv()` runs on the event loop, so the tracks only copy what the pipeline's worker threads produced;
the remote consumers keep only the newest far-end frame (aiortc's own queue is unbounded and a slow
reader would build seconds of delay).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engine.media import VideoFrame, now
from engine.stages import AudioRing, LatestSlot

log = logging.getLogger(__name__)
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_FRAME = 960  # 20 ms


class PersonaVideoTrack(MediaStreamTrack):
    """Sends each new converted frame once, stamped with its capture time."""

    kind = "video"

    def __init__(self, source: LatestSlot[VideoFrame], on_sent=None) -> None:
        super().__init__()
        self._source = source
        self._on_sent = on_sent  # called with each fresh frame's capture time (A/V delay measurement)
        self._version = 0
        self._t0: float | None = None
        self._last_pts = -1
        self._last: VideoFrame | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        version, item = await self._source.wait_newer(self._version, timeout=0.5)
        fresh = item is not None and version != self._version
        if not fresh:
            # Source stalled: repeat the last frame (or black before the first) rather than stall the call.
            item = self._last or VideoFrame(np.zeros((480, 640, 3), np.uint8), now(), -1)
        self._version = version
        self._last = item
        stamp = item.t_capture if fresh else now()
        if fresh and self._on_sent is not None:
            self._on_sent(item.t_capture)
        if self._t0 is None:
            self._t0 = stamp
        pts = max(int((stamp - self._t0) * VIDEO_CLOCK), self._last_pts + 1)
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(item.image, format="bgr24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class PersonaAudioTrack(MediaStreamTrack):
    """Sends 20 ms of converted voice every 20 ms, paced by the wall clock; silence on underrun."""

    kind = "audio"

    def __init__(self, ring: AudioRing, on_sent=None, max_buffer_s: float = 0.04) -> None:
        super().__init__()
        self._ring = ring
        self._on_sent = on_sent  # called with the capture time of each block sent
        self._max_buffer_s = max_buffer_s
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        # A source clock faster than ours (a real microphone) slowly fills the ring: trim it back, so the
        # voice delay stays constant instead of creeping up to the ring's capacity.
        self._ring.trim_to(self._max_buffer_s)
        samples, t_first = self._ring.read(AUDIO_FRAME)
        if self._on_sent is not None:
            self._on_sent(t_first)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += AUDIO_FRAME
        return frame


async def consume_video(track: MediaStreamTrack, sink: LatestSlot[VideoFrame]) -> None:
    """Keep the far end's newest video frame in `sink` until the track ends."""
    seq = 0
    try:
        while True:
            frame = await track.recv()
            image = await asyncio.to_thread(frame.to_ndarray, format="bgr24")
            sink.put(VideoFrame(image, now(), seq))
            seq += 1
    except MediaStreamError:
        return


async def consume_audio(track: MediaStreamTrack, sink: AudioRing) -> None:
    """Write the far end's audio (48 kHz, mixed to mono) into a bounded ring until the track ends."""
    seq = 0
    try:
        while True:
            frame = await track.recv()
            pcm = frame.to_ndarray().astype(np.float32) / 32768.0
            channels = len(frame.layout.channels)
            mono = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm.reshape(-1)
            sink.write(mono, now())
            seq += 1
    except MediaStreamError:
        return
