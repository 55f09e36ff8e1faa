"""The outgoing tracks: voice leaves as soon as a packet is complete, silence covers a stall, and the
picture is scaled and thinned as the operator asked."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from calls.tracks import PersonaAudioTrack, PersonaVideoTrack
from engine.media import VideoFrame, now
from engine.stages import AudioRing, LatestSlot

FRAME = 480


def _pcm(frame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1).astype(np.float32) / 32767


async def test_voice_packet_leaves_when_complete_not_on_a_timer() -> None:
    ring = AudioRing(48000, capacity_s=0.3)
    sent: list = []
    track = PersonaAudioTrack(ring, on_sent=sent.append, frame=FRAME, grace_s=10.0)
    ring.write(np.full(FRAME, 0.5, np.float32), now())
    first = await track.recv()  # a whole packet is there: out it goes
    assert np.allclose(_pcm(first), 0.5, atol=1e-3)
    # The next packet arrives in two halves from another thread, well after its nominal time: the track
    # waits for it (grace 10 s, far more than any busy machine adds) instead of sending silence, and sends it whole.
    def later() -> None:
        ring.write(np.full(FRAME // 2, 0.25, np.float32), now())
        threading.Timer(0.1, lambda: ring.write(np.full(FRAME // 2, 0.25, np.float32), now())).start()
    threading.Timer(0.1, later).start()
    second = await asyncio.wait_for(track.recv(), 20.0)
    assert np.allclose(_pcm(second), 0.25, atol=1e-3), "the late packet must go out whole, not padded"
    assert track.silent_packets == 0 and ring.underrun_samples == 0
    assert second.pts - first.pts == FRAME and sent[0] is not None


async def test_a_stalled_voice_is_covered_by_silence_on_the_nominal_clock() -> None:
    ring = AudioRing(48000, capacity_s=0.3)
    track = PersonaAudioTrack(ring, frame=FRAME, grace_s=0.03)
    ring.write(np.full(FRAME, 0.5, np.float32), now())
    await track.recv()
    frames = [await asyncio.wait_for(track.recv(), 1.0) for _ in range(10)]  # nothing more is written
    assert all(np.all(_pcm(f) == 0) for f in frames), "a stall must sound like silence"
    assert track.silent_packets == 10
    assert [f.pts for f in frames] == [FRAME * (k + 1) for k in range(10)], "the audio clock keeps running"
    ring.write(np.full(FRAME, 0.3, np.float32), now())
    back = await asyncio.wait_for(track.recv(), 1.0)
    assert np.allclose(_pcm(back), 0.3, atol=1e-3), "the voice comes back as soon as it is there"


class WatchedSlot(LatestSlot):
    """A LatestSlot that knows which version its reader has seen and now waits beyond."""

    seen = -1

    async def wait_newer(self, version: int, timeout: float):
        self.seen = version
        return await super().wait_newer(version, timeout)


async def test_video_is_scaled_and_thinned_to_the_asked_rate() -> None:
    slot: WatchedSlot[VideoFrame] = WatchedSlot()
    track = PersonaVideoTrack(slot, size=(320, 240), max_fps=15)
    image = np.zeros((480, 640, 3), np.uint8)
    t0 = now()

    async def camera() -> None:
        """30 fps by the frames' capture clock; each frame is put once the track waits for the next, so
        what is judged is the thinning rule, not how promptly this machine schedules a thread."""
        for k in range(12):
            version = slot.peek()[0]
            while slot.seen != version:
                await asyncio.sleep(0.001)
            slot.put(VideoFrame(image, t0 + k / 30, k))
    feeding = asyncio.ensure_future(camera())
    sent = []
    for _ in range(5):
        frame = await asyncio.wait_for(track.recv(), 2.0)
        assert (frame.width, frame.height) == (320, 240)
        sent.append(track._last.seq)
    feeding.cancel()
    assert sent == [0, 2, 4, 6, 8], f"at 15 fps from a 30 fps camera: every other frame, none starved ({sent})"
