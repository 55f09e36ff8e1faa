"""One call's media path: operator video and audio in, persona video and audio out.

The pipeline knows nothing of WebRTC or devices: sources call `push_video`/`push_audio` from their own
threads, sinks read `video_out` (newest-wins) and `audio_out` (bounded ring). Face and voice work run on
two worker threads, so neither the event loop nor the capture threads ever wait for inference.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

import numpy as np

from engine.media import AudioChunk, VideoFrame, now
from engine.metrics import Metrics
from engine.stages import AudioRing, LatestSlot, Worker

AUDIO_RATE = 48000
AUDIO_BLOCK = 960  # 20 ms at 48 kHz: the WebRTC/Opus frame


class VoiceProcessor(Protocol):
    """A streaming voice filter: same number of samples out as in, output delayed by `latency_s`."""

    latency_s: float

    def process(self, samples: np.ndarray) -> np.ndarray: ...


class CallPipeline:
    """Wires the face filter and the voice filter between operator input and persona output."""

    def __init__(self, face: Callable[[VideoFrame], VideoFrame], voice: VoiceProcessor,
                 audio_rate: int = AUDIO_RATE) -> None:
        self.metrics = Metrics()
        self.audio_rate = audio_rate
        self.voice = voice
        self.video_in: LatestSlot[VideoFrame] = LatestSlot(on_drop=self.metrics.stage("face").drop)
        self.video_out: LatestSlot[VideoFrame] = LatestSlot()
        self.audio_in = AudioRing(audio_rate, capacity_s=0.3)
        self.audio_out = AudioRing(audio_rate, capacity_s=0.3)
        self._face_worker = Worker("face", self.video_in, face, self.video_out.put, self.metrics.stage("face"))
        self._voice_stats = self.metrics.stage("voice")
        self._stop = threading.Event()
        self._voice_thread = threading.Thread(target=self._voice_loop, name="evercall-voice", daemon=True)
        self.voice_errors = 0

    def start(self) -> "CallPipeline":
        self._face_worker.start()
        self._voice_thread.start()
        return self

    def push_video(self, frame: VideoFrame) -> None:
        self.video_in.put(frame)

    def push_audio(self, chunk: AudioChunk) -> None:
        self.audio_in.write(chunk.samples, chunk.t_capture)

    def _voice_loop(self) -> None:
        while not self._stop.is_set():
            got = self.audio_in.take(AUDIO_BLOCK, timeout=0.25)
            if got is None:
                continue
            samples, t_first = got
            try:
                out = self.voice.process(samples)
            except Exception:
                self.voice_errors += 1
                out = np.zeros_like(samples)  # silence, never the operator's own voice
            # out[0] is the converted sample captured `latency_s` before samples[0].
            t_out = t_first - self.voice.latency_s
            self.audio_out.write(out, t_out)
            self._voice_stats.record(now() - t_out)

    def stats(self) -> dict:
        snap = self.metrics.snapshot()
        snap["audio"] = {
            "voice_latency_ms": round(self.voice.latency_s * 1000, 1),
            "in_dropped_samples": self.audio_in.dropped_samples,
            "out_dropped_samples": self.audio_out.dropped_samples,
            "out_underrun_samples": self.audio_out.underrun_samples,
        }
        return snap

    def close(self) -> None:
        self._stop.set()
        self.video_in.close()
        self.video_out.close()
        self._face_worker.join()
        self._voice_thread.join(2.0)
