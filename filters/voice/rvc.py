"""Neural voice conversion, RVC-style, on ONNX models the user brings: same streaming contract as the
WORLD converter (16 kHz in, as many samples out, constant reported delay), so VoiceStream can wrap it.

Per block (default 120 ms) the converter runs the models on a window of recent input that reaches
`context_ms` into the past (content encoders need context; the first and last frames of a window are
the least reliable):

* content: `rvc_content_encoder` (ContentVec/HuBERT-like, 16 kHz audio -> 768-d units, 50 per second),
  interpolated to the decoder's 100 frames per second;
* pitch: `rvc_pitch` (RMVPE-like, audio -> Hz per 10 ms) when its file is present, else our own
  YIN + StoneMask tracker; then mapped onto the persona's log-F0 mean and spread (operator statistics
  learned online, as in the WORLD converter), or just transposed when there is no profile;
* synthesis: `rvc_decoder` (RVC v2 generator: units, coarse and fine pitch, speaker id, noise ->
  audio at its own rate, 32/40/48 kHz, read from the output length), resampled to 16 kHz.

Blocks are joined by SOLA (synchronised overlap-add): each new block is shifted by up to `search_ms`
to where it best lines up with the tail of the previous one, then crossfaded over `crossfade_ms`. A
decoder does not carry its waveform's phase from one window to the next, so without the shift the
crossfade would mix two out-of-phase copies (a dip or a click at every block edge).

The same voice-activity gate as the WORLD converter's (`gate.py`) judges each 5 ms of input, with the
lookahead, and scales the output: room noise and breath are not handed to a decoder that would sing
them, and a block the gate finds idle skips the models altogether.

Delay: block - 1 sample (buffering) + lookahead + crossfade + search / 2. The SOLA shift moves the
true alignment by up to +-search/2 (5 ms by default) around that reported figure, as in RVC.
"""

from __future__ import annotations

import math
from math import gcd
from pathlib import Path

import numpy as np
from scipy import signal

from engine import models
from engine.voice_contract import VoiceFilter
from engine.errors import ModelError, PersonaError
from filters.voice.gate import CLOSED_DB, VoiceGate
from filters.voice.offline import convert_offline
from filters.voice.pitch_stats import RunningLogF0, spread_ratio, toward_persona
from filters.voice.profile import (
    FRAME,
    RATE,
    VoiceProfile,
    measure_operator,
    track_pitch,
)
from filters.voice.world_stream import as_mono_float

FRAME_HOP = 160  # decoder frames are 10 ms at 16 kHz
UNITS = 768
NOISE_CHANNELS = 192
NOISE_SCALE = 0.66666  # RVC's scale for the decoder's latent noise
F0_MEL_MIN = 1127.0 * math.log(1.0 + 50.0 / 700.0)  # RVC's coarse pitch scale: 50-1100 Hz on mel ...
F0_MEL_MAX = 1127.0 * math.log(1.0 + 1100.0 / 700.0)  # ... into bins 1..255 (1: unvoiced)
PRIOR_FRAMES = 100.0  # the prior counts as 1 s of voiced 10 ms frames
MEMORY_FRAMES = 3000.0  # forgetting: 30 s of voiced frames
KEYS = ("rvc_content_encoder", "rvc_pitch", "rvc_decoder")


def coarse_pitch(f0: np.ndarray) -> np.ndarray:
    """RVC's pitch bins: mel-scaled F0 mapped to 1..255 (unvoiced frames give 1)."""
    mel = 1127.0 * np.log1p(np.maximum(f0, 0.0) / 700.0)
    voiced = mel > 0
    mel[voiced] = (mel[voiced] - F0_MEL_MIN) * 254.0 / (F0_MEL_MAX - F0_MEL_MIN) + 1.0
    return np.clip(np.rint(mel), 1, 255).astype(np.int64)


def frames_to(values: np.ndarray, count: int) -> np.ndarray:
    """Resample a (frames, ...) sequence that tiles a window evenly onto `count` frames tiling the same
    window, linearly between frame centres: the encoder's 20 ms units and a pitch model's frames (which
    may be one more or fewer than the window holds) land on the decoder's 10 ms grid."""
    n = len(values)
    if n == count:
        return values
    if n == 1:
        return np.repeat(values, count, axis=0)
    pos = np.clip((np.arange(count) + 0.5) * n / count - 0.5, 0.0, n - 1.0)
    i0 = np.minimum(pos.astype(np.int64), n - 2)
    w = (pos - i0).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[i0] * (1 - w) + values[i0 + 1] * w


class PitchMap:
    """Operator log-F0 statistics (online, with a prior and forgetting) mapped onto the persona's."""

    def __init__(self, profile: VoiceProfile | None, transpose: float) -> None:
        self.profile = profile
        self.shift = transpose * math.log(2.0) / 12.0
        self.stats = RunningLogF0(PRIOR_FRAMES, MEMORY_FRAMES)

    def reset(self) -> None:
        self.stats.reset()

    def learn(self, f0: np.ndarray) -> None:
        """Fold in new voiced frames (each once); octave errors are clipped to 3 spreads."""
        self.stats.learn(np.log(f0[f0 > 0]))

    def assume(self, log_f0_mean: float, log_f0_std: float, frames: float) -> None:
        self.stats.assume(log_f0_mean, log_f0_std, frames)

    def __call__(self, f0: np.ndarray) -> np.ndarray:
        out = np.zeros_like(f0)
        voiced = f0 > 0
        log_f0 = np.log(f0[voiced])
        if self.profile is not None:
            ratio = spread_ratio(self.profile.log_f0_std, self.stats.std)
            log_f0 = toward_persona(log_f0, self.stats.mean, self.profile.log_f0_mean, ratio)
        out[voiced] = np.exp(log_f0 + self.shift)
        return np.clip(out, 0.0, 1100.0)


class RvcConverter:
    """Operator voice in, persona voice out, at 16 kHz through the three RVC models; constant delay."""

    def __init__(self, profile: VoiceProfile | None = None, *, models_dir: str | Path | None = None,
                 block_ms: float = 120, context_ms: float = 800, crossfade_ms: float = 20,
                 search_ms: float = 10, lookahead_ms: float = 10, transpose: float = 0.0, speaker: int = 0,
                 providers: list[str] | None = None, seed: int = 0, gate: bool = True) -> None:
        """Open and check the models in `models_dir` (default: --models-dir / $EVERCALL_MODELS / home).

        Raises ModelError naming the file and the fix when the encoder or decoder is missing or wrong; a
        missing pitch model falls back to YIN (`pitch_source` says which), a wrong one is an error.
        Times are in ms at 16 kHz: block, crossfade and lookahead in whole 10 ms frames."""
        if profile is not None and profile.rate != RATE:
            raise PersonaError(f"voice profile is for {profile.rate} Hz, the converter runs at {RATE} Hz: "
                               "learn the profile again")
        ms = RATE // 1000
        self.block = int(round(block_ms * ms))
        self.crossfade = int(round(crossfade_ms * ms))
        self.search = int(round(search_ms * ms))
        self.lookahead = int(round(lookahead_ms * ms))
        if (self.block <= 0 or any(v % FRAME_HOP for v in (self.block, self.crossfade, self.lookahead))
                or not 0 <= self.search <= self.block or self.crossfade > self.block or context_ms < 0):
            raise ValueError("block_ms, crossfade_ms and lookahead_ms must be whole multiples of 10 ms "
                             "(crossfade no longer than the block), search_ms 0..block_ms")
        segment = self.block + self.crossfade + self.search
        # The window is a whole number of 20 ms content frames, with at least `context_ms` before the segment.
        span = int(round(context_ms * ms)) + segment + self.lookahead
        self.window = -(-span // (2 * FRAME_HOP)) * 2 * FRAME_HOP
        self.frames = self.window // FRAME_HOP
        self.speaker = speaker
        self.seed = seed
        self.gate = VoiceGate(FRAME, RATE) if gate else None
        # Gate frames: the block's new 5 ms frames (final now), then the lookahead's (level only).
        new_start = self.window - self.lookahead - self.block
        self._gate_centres = new_start + FRAME // 2 + np.arange(0, self.block + self.lookahead, FRAME)
        self._gate_new = self.block // FRAME
        self._gate_hann = np.hanning(2 * FRAME + 2)[1:-1]
        self._closed = 10.0 ** (CLOSED_DB / 20.0)

        folder = models.models_dir(models_dir)
        self._encoder = models.open_session(models.MODELS["rvc_content_encoder"], folder, providers)
        self._decoder = models.open_session(models.MODELS["rvc_decoder"], folder, providers)
        pitch = models.check(models.MODELS["rvc_pitch"], folder)
        if pitch.status == "missing":
            self._pitch, self.pitch_source = None, "yin"
        elif not pitch.ok:
            raise ModelError(pitch.line())
        else:
            self._pitch = models.open_session(models.MODELS["rvc_pitch"], folder, providers, checked=pitch)
            self.pitch_source = "rvc_pitch"
        self._decoder_inputs = [t.name for t in models.MODELS["rvc_decoder"].inputs]
        self.provider = models.session_provider(self._decoder)
        self.pitch_map = PitchMap(profile, transpose)
        self._decoder_rate: int | None = None
        fade = np.sin(0.5 * np.pi * (np.arange(self.crossfade) + 0.5) / max(self.crossfade, 1)) ** 2
        self._fade_in, self._fade_out = fade, 1.0 - fade  # complementary: aligned signals keep their level
        self.reset()

    @property
    def delay_samples(self) -> int:
        """Output sample n is the conversion of input n - delay_samples, within +-search/2 (SOLA)."""
        return self.block - 1 + self.lookahead + self.crossfade + self.search // 2

    @property
    def latency_s(self) -> float:
        return self.delay_samples / RATE

    @property
    def decoder_rate(self) -> int | None:
        """The decoder's output rate (Hz), known after the first block."""
        return self._decoder_rate

    def reset(self) -> None:
        """Start a new stream: buffers and SOLA state cleared, operator pitch statistics back to the prior."""
        self.pitch_map.reset()
        self._reset_stream()

    def warm_up(self, samples: np.ndarray) -> None:
        """Fit the operator pitch statistics from a stretch (>= a few seconds) of the operator's speech."""
        stats = measure_operator(samples)
        self.pitch_map.assume(stats.log_f0_mean, stats.log_f0_std, stats.voiced_seconds * 100)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Convert a chunk of any length; returns exactly as many samples, delayed by `delay_samples`."""
        x = np.nan_to_num(as_mono_float(samples), nan=0.0, posinf=0.0, neginf=0.0)
        buf = np.concatenate([self._in, x])
        outs = [self._out]
        pos = 0
        while len(buf) - pos >= self.window:
            outs.append(self._convert_block(buf[pos:pos + self.window]))
            pos += self.block
        self._in = buf[pos:].copy()
        out = np.concatenate(outs)
        self._out = out[len(x):]
        return out[:len(x)].astype(np.float32)

    def convert_whole(self, samples: np.ndarray) -> np.ndarray:
        """Offline: the streamed conversion with the reported delay removed (same length)."""
        self._reset_stream()
        out = convert_offline(self.process, self.delay_samples, samples)
        self._reset_stream()
        return out

    # internals

    def _reset_stream(self) -> None:
        self._in = np.zeros(self.window - self.block)  # the past before the stream began is silence
        self._out = np.zeros(self.block - 1)
        self._tail = np.zeros(self.crossfade)
        self._rng = np.random.default_rng(self.seed)
        # Gains (linear) of the 5 ms frames before this block's new ones: the segment starts among them.
        self._past_gain = np.full(-(-(self.crossfade + self.search) // FRAME) + 1, self._closed)
        if self.gate is not None:
            self.gate.reset()

    def _f0(self, window: np.ndarray) -> np.ndarray:
        """Hz per 10 ms frame of the window (0: unvoiced)."""
        if self._pitch is None:
            return track_pitch(window, np.arange(self.frames) * FRAME_HOP + FRAME_HOP // 2)
        f0 = self._pitch.run(None, {"waveform": window[None, :].astype(np.float32)})[0]
        f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64).reshape(-1), nan=0.0)
        f0 = frames_to(f0, self.frames)
        return np.where(f0 > 30.0, f0, 0.0)  # interpolation between voiced and unvoiced leaves low values

    def _convert_block(self, window: np.ndarray) -> np.ndarray:
        gains = None
        if self.gate is not None:
            level = self.gate.levels(window, self._gate_centres)
            new = self._gate_new
            if self.gate.idle(level[:new], level[new:]) and self._past_gain.max() <= self._closed:
                self.gate.gains(level[:new], np.zeros(new, bool), np.zeros(new), level[new:], new)
                self._tail[:] = 0.0
                return np.zeros(self.block)  # nothing to say: the models are not run
        units = self._encoder.run(None, {"audio": window[None, :].astype(np.float32)})[0]
        units = np.asarray(units, dtype=np.float32).reshape(-1, UNITS)
        units = frames_to(units, self.frames)
        f0 = self._f0(window)
        end = self.frames - self.lookahead // FRAME_HOP  # frames after this are lookahead only
        final = f0[end - self.block // FRAME_HOP:end]  # each frame is learned from once, when final
        if self.gate is not None:
            gains = self._gate_gains(window, level)
            final = np.where(self.gate.confirmed.reshape(-1, FRAME_HOP // FRAME).any(axis=1), final, 0.0)
        self.pitch_map.learn(final)
        f0 = self.pitch_map(f0)
        feeds = dict(zip(self._decoder_inputs, (
            units[None, :, :].astype(np.float32),
            np.array([self.frames], dtype=np.int64),
            coarse_pitch(f0)[None, :],
            f0[None, :].astype(np.float32),
            np.array([self.speaker], dtype=np.int64),
            (self._rng.standard_normal((1, NOISE_CHANNELS, self.frames)) * NOISE_SCALE).astype(np.float32),
        ), strict=True))
        audio = np.asarray(self._decoder.run(None, feeds)[0], dtype=np.float64).reshape(-1)
        segment = self._to_16k(audio)
        if gains is not None:
            segment = segment * gains
        return self._sola(segment)

    def _gate_gains(self, window: np.ndarray, level: np.ndarray) -> np.ndarray:
        """The gate's verdict on the block's new frames, as a gain per sample of the whole segment.

        Voicing comes from our own tracker, not the pitch model: the gate judges what it was tuned on."""
        new = self._gate_new
        centres = self._gate_centres[:new]
        voiced = track_pitch(window, centres) > 0
        at = np.clip(centres[:, None] + np.arange(-FRAME, FRAME)[None, :], 0, len(window) - 1)
        frames = window[at] * self._gate_hann
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        gain_db = self.gate.gains(level[:new], voiced, self.gate.high_share(power), level[new:], new)
        frame_gains = np.concatenate([self._past_gain, 10.0 ** (gain_db / 20.0)])
        self._past_gain = frame_gains[-len(self._past_gain):]
        # Sample times of the segment, relative to the first new frame's centre, in frames.
        seg_len = self.block + self.crossfade + self.search
        t = (np.arange(seg_len) - (self.crossfade + self.search) - FRAME // 2) / FRAME
        return np.interp(t, np.arange(len(frame_gains)) - (len(frame_gains) - new), frame_gains)

    def _to_16k(self, audio: np.ndarray) -> np.ndarray:
        """The block's segment (block + crossfade + search, ending `lookahead` before the window's end)
        from the decoder's output, at 16 kHz. The resampling filter reads 10 ms either side of it."""
        if len(audio) % self.frames:
            raise ModelError(f"rvc_decoder.onnx returned {len(audio)} samples for {self.frames} frames, not a "
                             "whole number per frame: it is not an RVC generator export; export it again")
        rate = len(audio) // self.frames * 100
        self._decoder_rate = rate
        g = gcd(rate, RATE)
        up, down = RATE // g, rate // g
        per_16k = rate / RATE
        seg_len = self.block + self.crossfade + self.search
        end16 = self.window - self.lookahead
        start16 = end16 - seg_len
        margin16 = min(FRAME_HOP, start16)
        lo = int(round((start16 - margin16) * per_16k))
        hi = min(len(audio), int(round((end16 + FRAME_HOP) * per_16k)))
        if up == 1 and down == 1:
            resampled = audio[lo:hi]
        else:
            resampled = signal.resample_poly(audio[lo:hi], up, down)
        return resampled[margin16:margin16 + seg_len]

    def _sola(self, segment: np.ndarray) -> np.ndarray:
        """Shift the new segment to line up with the previous tail, crossfade, keep the next tail."""
        f, s, b = self.crossfade, self.search, self.block
        offset = s // 2
        if f and s and np.dot(self._tail, self._tail) > 1e-12:
            # Normalised cross-correlation of the tail with each candidate start of the new segment.
            corr = np.correlate(segment[:f + s], self._tail, mode="valid")
            energy = np.convolve(segment[:f + s] ** 2, np.ones(f), mode="valid")
            offset = int(np.argmax(corr / np.sqrt(energy + 1e-12)))
        out = segment[offset:offset + b].copy()
        if f:
            out[:f] = out[:f] * self._fade_in + self._tail * self._fade_out
            self._tail = segment[offset + b:offset + b + f].copy()
        return out


def for_persona(persona, rate: int, models_dir=None) -> VoiceFilter:
    """The registry's constructor (filters/registry.py): the user's RVC models at the call's rate."""
    from filters.voice.persona_voice import voice_profile
    from filters.voice.stream import VoiceStream

    profile = voice_profile(persona)
    return VoiceStream(profile, rate, converter=RvcConverter(profile, models_dir=models_dir))
