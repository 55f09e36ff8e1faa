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
from collections import deque

import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from calls.network import PauseFinder
from engine.audio_io import to_mono
from engine.media import VideoFrame, now
from engine.pipeline import AUDIO_BLOCK, AUDIO_RATE
from engine.stages import AudioRing, LatestSlot

log = logging.getLogger(__name__)
VIDEO_CLOCK = 90000
AUDIO_FRAME = AUDIO_BLOCK  # 10 ms: see calls/encoders.py


class PersonaVideoTrack(MediaStreamTrack):
    """Sends each new converted frame once, stamped with its capture time.

    `size` scales the picture sent; `max_fps` skips frames that come sooner than the rate allows (a skipped
    frame is never sent late: the next fresh one goes instead, so thinning adds no delay).
    """

    kind = "video"

    def __init__(self, source: LatestSlot[VideoFrame], on_sent=None, size: tuple[int, int] | None = None,
                 max_fps: float | None = None, reframe=None) -> None:
        super().__init__()
        self._source = source
        # reframe(image, t_capture) -> image: the far end's framing (calls/framing.py), run off the event loop
        # instead of the plain resize; it returns the picture as it is until the far end says its shape.
        self._reframe = reframe
        self._on_sent = on_sent  # called with each fresh frame's capture time (A/V delay measurement)
        self._size = size
        self._min_gap = 0.0 if not max_fps else 0.9 / max_fps  # 10% slack: camera clocks wobble
        self._version = 0
        self._t0: float | None = None
        self._last_pts = -1
        self._last: VideoFrame | None = None

    async def _next_fresh(self) -> VideoFrame | None:
        """The next frame newer than the last one sent and far enough after it; None if the source stalls."""
        while True:
            version, item = await self._source.wait_newer(self._version, timeout=0.5)
            if item is None or version == self._version:
                return None
            self._version = version
            if self._last is None or self._last.seq < 0 or item.t_capture - self._last.t_capture >= self._min_gap:
                return item

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._next_fresh()
        fresh = item is not None
        if not fresh:
            # Source stalled: repeat the last frame (or black before the first) rather than stall the call.
            item = self._last or VideoFrame(np.zeros((480, 640, 3), np.uint8), now(), -1)
        self._last = item
        stamp = item.t_capture if fresh else now()
        if fresh and self._on_sent is not None:
            self._on_sent(item.t_capture)
        if self._t0 is None:
            self._t0 = stamp
        pts = max(int((stamp - self._t0) * VIDEO_CLOCK), self._last_pts + 1)
        self._last_pts = pts
        image = item.image
        if self._reframe is not None:
            image = await asyncio.to_thread(self._reframe, image, item.t_capture)
        elif self._size is not None and image.shape[1::-1] != self._size:
            shrinking = self._size[0] < image.shape[1]
            image = await asyncio.to_thread(cv2.resize, image, self._size,  # off the event loop
                                            interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class PersonaAudioTrack(MediaStreamTrack):
    """Sends converted voice in `frame`-sample packets as soon as each is complete.

    The sender is driven by the audio, not by a timer: a packet leaves the moment the voice filter has
    written its last sample, so no packet waits for a clock tick (a timer would hold each one for a random
    0-20 ms, a different amount in every call). When the voice stops coming for `grace_s` past the moment
    the next packet was due (a stalled microphone, a muted source), silence goes out on the nominal clock
    instead, so the far end's playout never stalls; the ring is trimmed to `max_buffer_s` so a burst can
    never leave a standing delay.

    With a `hold` (calls/network.py: VoiceHold) the voice goes out that many frames later, so that on a
    lossy path it does not run ahead of the picture. The hold grows by sending a frame of silence in place
    of the next one and shrinks by leaving out a frame, one frame at a time and only where the voice is
    quiet on both sides (a pause, judged against this voice and room: calls/network.py PauseFinder), so she
    never hears a cut or a stretch in a word; `on_sent` still gets each block as it is read (the pipeline's
    own A/V hold must not follow this one), and the ring's voice mark goes on after the hold, so its
    timeline is the one she receives.
    """

    kind = "audio"

    def __init__(self, ring: AudioRing, on_sent=None, frame: int = AUDIO_FRAME, max_buffer_s: float = 0.04,
                 grace_s: float = 0.03, hold=None) -> None:
        super().__init__()
        self._ring = ring
        # hold: a calls.network.VoiceHold, or None. Its target (whole frames) is how many frames wait in
        # `_line` before they go: the voice leaves that much later, still one packet per frame as it comes.
        self._hold = hold
        self._line: deque[tuple[np.ndarray, bool]] = deque()  # each frame and whether it is quiet
        self._pauses = None if hold is None else PauseFinder(frame / AUDIO_RATE)  # relative to this voice
        self._last_out_quiet = True
        self._on_sent = on_sent  # called with the capture time of each block sent
        self._frame = frame
        self._max_buffer_s = max_buffer_s
        self._grace_s = grace_s
        self._due: float | None = None  # when the next packet should be complete
        self._flowing = False  # the last packet carried voice (else: silence on the nominal clock)
        self._pts = 0
        self.silent_packets = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        period = self._frame / AUDIO_RATE
        loop_now = time.monotonic()
        if self._due is None:
            self._due = loop_now
        deadline = self._due + (self._grace_s if self._flowing else 0.0)
        got = await self._ring.wait_for(self._frame, deadline - loop_now)
        self._ring.trim_to(self._max_buffer_s)
        samples, t_first = self._ring.read(self._frame, finish=self._hold is None)
        self._flowing = got
        if got:
            self._due = time.monotonic() + period
        else:
            # Silence keeps the nominal clock: the packets a stall left out go at once (the far end's
            # timeline stays on time), then one per period while the stall lasts.
            self.silent_packets += 1
            self._due += period
        if self._on_sent is not None:
            self._on_sent(t_first)
        if self._hold is not None:  # the ring's mark goes on after the hold: its timeline is the one sent
            samples = self._ring.finish(self._through_hold(samples, period))
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += self._frame
        return frame

    @property
    def held_ms(self) -> float:
        """How long the voice waits in the hold now (ms)."""
        return 1000 * len(self._line) * self._frame / AUDIO_RATE

    def _through_hold(self, samples: np.ndarray, period: float) -> np.ndarray:
        """`samples` into the hold line; what leaves it now (one frame), moving the hold one frame towards
        its target where the voice is quiet."""
        line = self._line
        line.append((samples, self._pauses.quiet(samples)))  # each frame's loudness is measured once
        held = len(line) - 1  # frames that stay in the line if the oldest one leaves now
        want = self._hold.frames(period)
        if want > held and self._last_out_quiet and line[0][1]:
            out, quiet = np.zeros_like(samples), True  # silence goes instead: the line grows by one frame
        elif want < held and self._last_out_quiet and line[0][1] and line[1][1]:
            line.popleft()  # a quiet frame is left out: the line shrinks by one frame
            out, quiet = line.popleft()
        else:
            out, quiet = line.popleft()
        self._last_out_quiet = quiet
        self._hold.applied_ms = self.held_ms
        return out


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


def frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """A decoded s16 audio frame (packed, any channel count) as mono float32 in -1..1."""
    pcm = frame.to_ndarray().astype(np.float32).reshape(-1, len(frame.layout.channels)) / 32768.0
    return to_mono(pcm)


async def consume_audio(track: MediaStreamTrack, sink: AudioRing) -> None:
    """Write the far end's audio (48 kHz, mixed to mono) into a bounded ring until the track ends."""
    try:
        while True:
            frame = await track.recv()
            sink.write(frame_to_mono(frame), now())
    except MediaStreamError:
        return
