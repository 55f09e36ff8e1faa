"""One call's media path: operator video and audio in, persona video and audio out.

The pipeline knows nothing of WebRTC or devices: sources call `push_video`/`push_audio` from their own
threads, sinks read `video_out` (newest-wins) and `audio_out` (bounded ring). Face and voice work run on
two worker threads, so neither the event loop nor the capture threads ever wait for inference.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

import numpy as np

from engine.face_contract import FaceFilter, PassthroughFace
from engine.media import AudioChunk, VideoFrame, now
from engine.metrics import Metrics
from engine.stages import AudioRing, DelayLine, LatestSlot, Worker
from engine.voice_contract import VoiceFilter

AUDIO_RATE = 48000
AUDIO_BLOCK = 480  # 10 ms at 48 kHz: the microphone block and the Opus packet (see calls/encoders.py)
EMA = 0.05  # weight of each new sample in the measured send delays (about 20 samples' memory)


class CallPipeline:
    """Wires the face filter and the voice filter between operator input and persona output.

    Lips and voice stay together because video waits for voice: each converted frame is held until its
    capture time plus the audio path's measured delay (voice filter + output buffer), so both leave the
    engine equally late. `align_av=False` sends frames as soon as they are converted.
    """

    def __init__(self, face: FaceFilter, voice: VoiceFilter, audio_rate: int = AUDIO_RATE, align_av: bool = True,
                 mark: Callable[[np.ndarray, int], np.ndarray] | None = None,
                 voice_mark: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.metrics = Metrics()
        self._face = face  # closed when it is replaced or the call ends
        self._retired: list[FaceFilter] = []  # replaced filters, closed on the face thread
        self.mark = mark  # provenance watermark applied to every frame that leaves, cards included
        self.card: np.ndarray | None = None  # when set, replaces the picture and silences the voice
        self.muted = False
        self.audio_rate = audio_rate
        self.voice = voice
        self.video_in: LatestSlot[VideoFrame] = LatestSlot(on_drop=self.metrics.stage("face").drop)
        self.video_out: LatestSlot[VideoFrame] = LatestSlot()
        self.audio_in = AudioRing(audio_rate, capacity_s=0.3)
        # The voice's provenance mark goes on as the sinks read, silence and padding included (see AudioRing).
        self.audio_out = AudioRing(audio_rate, capacity_s=0.3, on_read=voice_mark)
        # Until audio has been sent, assume the voice filter's delay plus one block of buffering.
        self.audio_send_delay = voice.latency_s + AUDIO_BLOCK / audio_rate
        self.video_send_delay: float | None = None
        self._sent_times: deque[float] = deque(maxlen=120)
        self._delay_line = DelayLine(self.video_out.put, self._video_hold,
                                     on_drop=self.metrics.stage("face").drop) if align_av else None
        outbox = self._delay_line.put if self._delay_line else self.video_out.put
        self._face_worker = Worker("face", self.video_in, self._video_step, outbox, self.metrics.stage("face"))
        self._voice_stats = self.metrics.stage("voice")
        self._stop = threading.Event()
        self._voice_thread = threading.Thread(target=self._voice_loop, name="evercall-voice", daemon=True)
        self.voice_errors = 0

    def start(self) -> "CallPipeline":
        self._face_worker.start()
        self._voice_thread.start()
        return self

    def set_face(self, face: FaceFilter) -> None:
        """Switch the face filter between frames. The old one is closed on the face thread before the next
        frame, so it is never closed while a frame is still inside it."""
        self._retired.append(self._face)
        self._face = face

    def _close_retired(self) -> None:
        while self._retired:
            self._retired.pop().close()

    def _video_step(self, frame: VideoFrame) -> VideoFrame:
        self._close_retired()
        card = self.card
        out = frame.with_image(card if card is not None else self._face.process(frame.image, frame.t_capture).image)
        if self.mark is not None:
            out = out.with_image(self.mark(out.image, out.seq))
        return out

    def push_video(self, frame: VideoFrame) -> None:
        self.video_in.put(frame)

    def push_audio(self, chunk: AudioChunk) -> None:
        self.audio_in.write(chunk.samples, chunk.t_capture)

    def _video_hold(self) -> float:
        return self.audio_send_delay

    def note_audio_sent(self, t_capture: float | None) -> None:
        """A sink sent audio captured at `t_capture`: update the measured audio delay."""
        if t_capture is not None:
            self.audio_send_delay += EMA * ((now() - t_capture) - self.audio_send_delay)

    def note_video_sent(self, t_capture: float) -> None:
        """A sink sent a frame captured at `t_capture`: update the measured video delay."""
        self._sent_times.append(now())
        delay = now() - t_capture
        self.video_send_delay = delay if self.video_send_delay is None else \
            self.video_send_delay + EMA * (delay - self.video_send_delay)

    def _voice_loop(self) -> None:
        while not self._stop.is_set():
            got = self.audio_in.take(AUDIO_BLOCK, timeout=0.25)
            if got is None:
                continue
            samples, t_first = got
            try:
                out = self.voice.process(samples)  # runs even when muted, so its state stays in time
            except Exception:
                self.voice_errors += 1
                out = np.zeros_like(samples)  # silence, never the operator's own voice
            if self.muted or self.card is not None:
                out = np.zeros_like(out)
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
        snap["filter_errors"] = {"face": self._face_worker.errors, "voice": self.voice_errors,
                                 "voice_mark": self.audio_out.on_read_errors}  # each survived
        video = self.video_send_delay
        sent = list(self._sent_times)
        recent = [t for t in sent if t > now() - 2.0]
        snap["fps_out"] = round((len(recent) - 1) / (recent[-1] - recent[0]), 1) if len(recent) > 2 else 0.0
        snap["av"] = {
            "audio_send_delay_ms": round(self.audio_send_delay * 1000, 1),
            "video_send_delay_ms": None if video is None else round(video * 1000, 1),
            "skew_ms": None if video is None else round((video - self.audio_send_delay) * 1000, 1),
        }
        return snap

    def close(self) -> None:
        self._stop.set()
        self.video_in.close()
        self.video_out.close()
        self._face_worker.join()
        if self._delay_line:
            self._delay_line.close()
        self._voice_thread.join(2.0)
        self._close_retired()
        self._face.close()
        self._face = PassthroughFace()  # a second close() closes nothing twice
