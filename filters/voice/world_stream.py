"""Streaming voice conversion toward a persona with the WORLD vocoder (pyworld), on CPU, no weights.

Each 20 ms hop is analysed (pitch, envelope, aperiodicity at 5 ms frames) from a window reaching
`lookahead_ms` into the future, mapped toward the persona, and re-synthesised by our own WORLD-style
pulse synthesiser. That synthesiser carries the pitch-pulse phase, the noise generator and the
overlap-add tails across hops, so chunk edges have no seams: nothing needs crossfading, and the stream
sounds like whole-file synthesis (restarting `pyworld.synthesize` per chunk was measured to cost
similarity). The delay is constant: hop buffering plus lookahead, minus one sample.

Mapping, per frame: operator log-F0 -> persona mean and spread (operator statistics estimated online);
envelope frequency-warped by a vocal-tract factor (a raising warp only in part, RAISE_SHARE), equalised
toward the persona's average envelope and kept at the frame's original power, so the operator's loudness
and dynamics pass through. Voiced frames then take most of the fine envelope shape (mel-cepstra from
KNN_FROM up) of their nearest persona frames stored in the profile (kNN-VC's idea on mel-cepstra); the
coarse shape, the formant pattern that makes the phone, stays the operator's. The words come from the
operator; pitch, vocal-tract length, average colour and fine timbre move. On real speakers (festival's
kal, ked and slt, `python -m benchmarks.bench_voice --real`) replacing whole frames and the full raising
warp had added 0.27 to the word error rate (median of six pairs, tuning sentences); see the README.
Where the persona sample was band-limited (a phone recording), EQ and matching stop at its band edge.

A voice-activity gate (`gate.py`) scales each frame: room noise and breath come out as silence, and
because the gate sees the same lookahead as the analysis, it opens before an onset reaches the output.
A hop the gate judges idle skips analysis and synthesis altogether, so pauses cost almost nothing.
"""

from __future__ import annotations

import math

import numpy as np

from engine.errors import PersonaError
from filters.voice.gate import VoiceGate
from filters.voice.offline import convert_offline
from filters.voice.pitch_stats import RunningLogF0, spread_ratio, toward_persona
from filters.voice.profile import (
    ANALYSIS_REACH,
    FFT_SIZE,
    FRAME,
    RATE,
    VoiceProfile,
    VoiceStats,
    analyse,
    cepstral_maps,
    hold_above,
    measure_operator,
    recorded_band_top,
)

BINS = FFT_SIZE // 2 + 1
UNVOICED_PULSE_HZ = 500.0  # WORLD drives noise with pulses at this rate where there is no pitch
PRE_RINGING = 16  # samples at the end of a pulse response that hold its wrapped pre-ringing: dropped
SILENCE_PEAK = 1e-6  # a window whose peak is below this (-120 dBFS) is digital silence: skip analysis
PRIOR_SECONDS = 1.0  # the prior counts as this much voiced speech
MEMORY_SECONDS = 30.0  # exponential forgetting of operator statistics (voiced time)
WARP_EXPONENT = 0.35  # formant ratio ~ F0 ratio ** this, when the envelopes cannot tell yet
WARP_SEARCH = np.exp(np.linspace(math.log(0.7), math.log(1.45), 57))
WARP_TRUST = 1.2  # the envelope-based warp may differ from the F0-based one by at most this factor
WARP_EVERY_HOPS = 25
# Warps that raise formants (a man toward a woman) are applied at this share, in log terms: on real
# speakers (festival's kal and ked toward slt, tuning sentences) the full warp (about 1.19) cost 0.3-0.4
# in word error rate, 0.6 of it (about 1.11) cost 0.17-0.29 and closed as much of the similarity gap.
# Warps that lower them (toward a man) kept every word and are applied whole.
RAISE_SHARE = 0.6
# The EQ may move the average envelope by up to +-20 dB (natural-log power): at +-12 dB it was clipped
# between these real speakers' averages (festival's kal, ked, slt, tuning sentences: gap closed 0.226 ->
# 0.252, no word lost); +-30 dB gave the same as 20.
EQ_LIMIT = math.log(10 ** 2.0)
NARROWBAND_HZ = 5000.0  # an operator envelope ending below this came through an 8 kHz-sampled microphone
EQ_SMOOTH_BINS = 16  # Hann half-width: about 250 Hz, keeps the EQ from copying single harmonics
KNN_K = 4  # persona frames averaged per converted frame
KNN_BLEND = 0.8  # how far a converted frame's shape moves to its neighbours' mean (1: replaced)
# Frame matching moves only mel-cepstra from this index up: the fine shape of the envelope, where a
# speaker's timbre lives. The lower ones (the formant pattern that says which phone it is) stay the
# operator's, warped: replacing them swapped phones and cost words on real speakers.
KNN_FROM = 12


def as_mono_float(samples: np.ndarray) -> np.ndarray:
    """Refuse what would be silently garbled: interleaved channels or integer PCM."""
    x = np.asarray(samples)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"voice conversion takes mono float samples in [-1, 1], got {x.dtype} {x.shape}: "
                         "convert with engine.audio_io.to_mono and divide int16 PCM by 32768")
    return x.astype(np.float64)


def _frames(seconds: float) -> float:
    return seconds * RATE / FRAME


def warp_envelope(log_env: np.ndarray, alpha: float) -> np.ndarray:
    """Move spectral features from frequency f to alpha*f (rows of `log_env`); edges held."""
    src = np.clip(np.arange(BINS) / alpha, 0, BINS - 1)
    i0 = np.minimum(src.astype(np.int64), BINS - 2)
    w = src - i0
    return log_env[..., i0] * (1 - w) + log_env[..., i0 + 1] * w


BIN_HZ = np.arange(BINS) * RATE / FFT_SIZE  # each FFT bin's frequency


def _band_fade(top_hz: float) -> np.ndarray:
    """1 up to 500 Hz below `top_hz`, 0 from it up, a raised-cosine fade between (per FFT bin)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip((top_hz - BIN_HZ) / 500.0, 0.0, 1.0))


def smooth_bins(values: np.ndarray, half_width: int) -> np.ndarray:
    """Hann smoothing along frequency with edge padding."""
    kernel = np.hanning(2 * half_width + 3)[1:-1]
    kernel /= kernel.sum()
    return np.convolve(np.pad(values, half_width, mode="edge"), kernel, mode="valid")


def estimate_warp(operator_env: np.ndarray, persona_env: np.ndarray, top_hz: float = 6000.0) -> float:
    """Warp factor that best lines up the two average envelopes' shapes (100 Hz-6 kHz, or up to the
    persona sample's band edge), tilt ignored."""
    band = (BIN_HZ > 100) & (BIN_HZ < min(top_hz, 6000.0))
    scores = []
    for alpha in WARP_SEARCH:
        residual = persona_env - warp_envelope(operator_env, alpha)
        residual = residual - smooth_bins(residual, 64)
        scores.append(np.var(residual[band]))
    return float(WARP_SEARCH[int(np.argmin(scores))])


class OperatorStats:
    """Operator log-F0 mean/spread (RunningLogF0) and average log envelope, online, with forgetting."""

    def __init__(self) -> None:
        self.pitch = RunningLogF0(_frames(PRIOR_SECONDS), _frames(MEMORY_SECONDS))
        self.decay = self.pitch.decay
        self.env_w = 0.0
        self.env_sum = np.zeros(BINS)

    @property
    def mean(self) -> float:
        return self.pitch.mean

    @property
    def std(self) -> float:
        return self.pitch.std

    @property
    def envelope(self) -> np.ndarray | None:
        return self.env_sum / self.env_w if self.env_w > 0 else None

    def update(self, log_f0: np.ndarray, log_env: np.ndarray) -> None:
        """Fold in voiced frames: their log-F0 (octave errors clipped) and their log envelopes."""
        self.pitch.learn(log_f0)
        for env in log_env:
            self.env_w = self.env_w * self.decay + 1.0
            self.env_sum = self.env_sum * self.decay + env

    def assume(self, stats: VoiceStats) -> None:
        """Start from measured statistics, weighted as the voiced time they came from (up to the memory)."""
        w = min(_frames(stats.voiced_seconds), _frames(MEMORY_SECONDS))
        self.pitch.assume(stats.log_f0_mean, stats.log_f0_std, w)
        self.env_w, self.env_sum = w, w * stats.envelope.astype(np.float64)


def _minimum_phase(log_amp: np.ndarray) -> np.ndarray:
    """Minimum-phase spectrum (rows) with the given natural-log amplitude, via the folded cepstrum."""
    cep = np.fft.irfft(log_amp, FFT_SIZE)
    cep[:, 1:FFT_SIZE // 2] *= 2.0
    cep[:, FFT_SIZE // 2 + 1:] = 0.0
    return np.exp(np.fft.rfft(cep))


class PulseSynth:
    """WORLD-style excitation + minimum-phase filtering, overlap-added, continuous across hops.

    Like WORLD's synthesis: one response per pitch pulse (unvoiced: noise pulses at 500 Hz), periodic
    part sqrt(sp * (1 - ap^2)) with fractional pulse timing, noise part sqrt(sp * ap^2) shaped noise.
    Unlike it, the pulse phase, noise generator and response tails persist between calls.
    """

    def __init__(self, hop: int, seed: int = 0) -> None:
        self.hop = hop
        self.seed = seed
        self._ramp = -2j * np.pi * np.arange(BINS) / FFT_SIZE
        dc = np.hanning(FFT_SIZE // 2 + 2)[1:-1]
        self._dc = np.concatenate([dc / dc.sum(), np.zeros(FFT_SIZE // 2)])
        self.reset()

    def reset(self) -> None:
        self.phase = 0.0
        self.acc = np.zeros(self.hop + FFT_SIZE)
        self.rng = np.random.default_rng(self.seed)

    def render(self, f0: np.ndarray, log_sp: np.ndarray, ap: np.ndarray) -> np.ndarray:
        """Samples of one hop from frames at offsets 0, FRAME, ..., hop (the last one for interpolation)."""
        n_frames = len(f0)
        voiced_frames = f0 > 0
        filled = f0.copy()
        if voiced_frames.any():  # unvoiced frames borrow the nearest voiced pitch for interpolation
            idx = np.flatnonzero(voiced_frames)
            nearest = idx[np.abs(np.arange(n_frames)[:, None] - idx[None, :]).argmin(axis=1)]
            filled = f0[nearest]
        else:
            filled[:] = UNVOICED_PULSE_HZ
        t = np.arange(self.hop) / FRAME
        voiced = np.interp(t, np.arange(n_frames), voiced_frames.astype(float)) > 0.5
        hz = np.where(voiced, np.interp(t, np.arange(n_frames), filled), UNVOICED_PULSE_HZ)
        phase = self.phase + np.cumsum(hz / RATE)
        before = np.concatenate([[self.phase], phase[:-1]])
        at = np.flatnonzero(np.floor(phase) > np.floor(before))
        self.phase = phase[-1] - math.floor(phase[-1])
        if len(at):
            # The pulse fell between samples at-1 and at: place it at at-1, delayed by the fraction. A
            # delay, not an advance: an advanced response wraps round the FFT buffer, and its peak came
            # out 64 ms later as a click per pulse (+8-12 dB of buzz above 4 kHz, measured against WORLD's
            # own synthesis), which cost the recogniser 0.06 in word error rate on real speakers.
            frac = (np.floor(phase[at]) - before[at]) / (phase[at] - before[at])
            start = np.maximum(at - 1, 0)
            self._add_pulses(start, np.maximum(at - 1 + frac - start, 0.0), voiced[at], hz[at], log_sp, ap)
        return self.silence()  # hand out the finished hop

    def silence(self) -> np.ndarray:
        """The next hop of what is already in the accumulator (with nothing new to say: earlier pulses ring
        out, no new ones, so it costs nothing)."""
        out = self.acc[:self.hop].copy()
        self.acc = np.concatenate([self.acc[self.hop:], np.zeros(self.hop)])
        return out

    def _add_pulses(self, at: np.ndarray, shift: np.ndarray, voiced: np.ndarray, hz: np.ndarray,
                    log_sp: np.ndarray, ap: np.ndarray) -> None:
        pos = (at + shift) / FRAME
        j0 = np.clip(pos.astype(np.int64), 0, len(log_sp) - 2)
        w = np.clip(pos - j0, 0.0, 1.0)[:, None]
        env = np.exp(log_sp[j0] * (1 - w) + log_sp[j0 + 1] * w)
        ratio = np.clip(ap[j0] * (1 - w) + ap[j0 + 1] * w, 0.001, 0.999) ** 2
        ratio = np.where(voiced[:, None], ratio, 1.0)
        period = np.maximum(np.round(RATE / hz).astype(np.int64), 1)

        noise = self.rng.standard_normal((len(at), int(period.max())))
        noise *= np.arange(noise.shape[1])[None, :] < period[:, None]
        noise -= noise.sum(axis=1, keepdims=True) / period[:, None]
        noise *= np.arange(noise.shape[1])[None, :] < period[:, None]
        response = np.fft.irfft(_minimum_phase(0.5 * np.log(env * ratio + 1e-16))
                                * np.fft.rfft(noise, FFT_SIZE), FFT_SIZE)
        if voiced.any():
            v = np.flatnonzero(voiced)
            spec = _minimum_phase(0.5 * np.log(env[v] * (1 - ratio[v]) + 1e-16))
            pulse = np.fft.irfft(spec * np.exp(self._ramp[None, :] * shift[v, None]), FFT_SIZE)
            pulse[:, -PRE_RINGING:] = 0.0  # the fractional delay's sinc tail before the peak, wrapped round
            pulse -= pulse.sum(axis=1, keepdims=True) * self._dc[None, :]  # no DC thump per pulse
            response[v] += pulse * np.sqrt(period[v])[:, None]
        for k, start in enumerate(at):
            self.acc[start:start + FFT_SIZE] += response[k]


class WorldVoiceConverter:
    """Operator voice in, persona voice out, at 16 kHz, any chunk sizes, constant delay."""

    def __init__(self, profile: VoiceProfile, *, hop_ms: float = 20, lookahead_ms: float = 20,
                 seed: int = 0, gate: bool = True, knn: bool = True) -> None:
        """No crossfade: this converter has no chunk seams to fade (see the module note).
        `gate=False` re-synthesises everything, room noise included; `knn=False` leaves out the matching
        of persona frames (both for comparison)."""
        hop = int(round(hop_ms * RATE / 1000))
        if hop <= 0 or hop % FRAME or hop > 8 * FRAME:
            raise ValueError(f"hop_ms must be a multiple of {1000 * FRAME // RATE} ms up to 40 ms, not {hop_ms}")
        if not 0 <= lookahead_ms <= 100:
            raise ValueError("lookahead_ms must be 0-100")
        if profile.rate != RATE:
            raise PersonaError(f"voice profile is for {profile.rate} Hz, the converter runs at {RATE} Hz: "
                               "learn the profile again")
        self.profile = profile
        self.hop = hop
        self.lookahead = int(round(lookahead_ms * RATE / 1000))
        self._context = -(-ANALYSIS_REACH // FRAME) * FRAME
        self._centres = self._context + np.arange(0, hop + 1, FRAME)
        # Frames inside the lookahead: only their level is measured, so the gate can open ahead of onsets.
        ahead = self._context + hop + np.arange(FRAME, self.lookahead + 1, FRAME)
        self._gate_centres = np.concatenate([self._centres, ahead])
        self._synth = PulseSynth(hop, seed)
        self.gate = VoiceGate(FRAME, RATE) if gate else None
        self.operator = OperatorStats()
        self._target_env = profile.envelope.astype(np.float64)
        # What the persona sample does not cover (a phone recording's top end) is left as converted:
        # EQ and frame matching fade out over the last 500 Hz below its band edge.
        self._band_top = float(profile.band_top_hz)
        self._in_band = _band_fade(self._band_top)
        self._to_cep, self._from_cep = cepstral_maps()
        self._frames = profile.frames.astype(np.float64) if knn and len(profile.frames) >= KNN_K else None
        if self._frames is not None:
            self._frame_norms = np.sum(self._frames ** 2, axis=1)
            self._persona_cep = self._to_cep @ hold_above(self._target_env, self._band_top)
            detail = (np.arange(1, self._to_cep.shape[0] + 1) >= KNN_FROM).astype(np.float64)
            self._from_detail = self._from_cep * detail[None, :]
        self.reset()

    @property
    def delay_samples(self) -> int:
        """Output sample n is the conversion of input sample n - delay_samples."""
        return self.hop + self.lookahead - 1

    @property
    def latency_s(self) -> float:
        """Algorithmic latency: waiting for a full hop plus the lookahead (compute time not included)."""
        return self.delay_samples / RATE

    @property
    def warp(self) -> float:
        """The envelope warp factor now in use (>1 moves formants up)."""
        return self._alpha

    def reset(self) -> None:
        """Start a new stream: buffers, delay line and synthesis cleared, operator statistics back to the prior."""
        self.operator = OperatorStats()
        self._alpha_env: float | None = None
        self._reset_stream()

    def warm_up(self, samples: np.ndarray) -> None:
        """Fit the operator statistics from a stretch (>= a few seconds) of the operator's own speech."""
        stats = measure_operator(samples)
        self.operator.assume(stats)
        self._alpha_env = estimate_warp(stats.envelope, self._target_env, self._band_top)
        self._update_mapping()

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Convert a chunk of any length; returns exactly as many samples, delayed by `delay_samples`."""
        x = np.nan_to_num(as_mono_float(samples), nan=0.0, posinf=0.0, neginf=0.0)
        buf = np.concatenate([self._in, x])
        need = self._context + self.hop + self.lookahead
        outs = [self._out]
        pos = 0
        while len(buf) - pos >= need:
            outs.append(self._convert_hop(buf[pos:pos + need]))
            pos += self.hop
        self._in = buf[pos:].copy()
        out = np.concatenate(outs)
        self._out = out[len(x):]
        return out[:len(x)].astype(np.float32)

    def convert_whole(self, samples: np.ndarray) -> np.ndarray:
        """Offline: the streamed conversion with the delay removed (same length, time-aligned).

        Operator statistics carry over (from warm_up or earlier speech) and keep adapting; the stream
        state is fresh before and after."""
        self._reset_stream()
        out = convert_offline(self.process, self.delay_samples, samples)
        self._reset_stream()
        return out

    # internals

    def _reset_stream(self) -> None:
        self._in = np.zeros(self._context)  # the past before the stream began is silence
        self._out = np.zeros(self.delay_samples)
        self._synth.reset()
        if self.gate is not None:
            self.gate.reset()
        self._hops = 0
        self._warp_due = 0
        self._update_mapping()

    def _update_mapping(self) -> None:
        """Recompute the warp factor and EQ from the current operator statistics."""
        p, op = self.profile, self.operator
        alpha = math.exp(WARP_EXPONENT * (p.log_f0_mean - op.mean))
        env = op.envelope
        if env is not None and op.env_w > _frames(2.0):
            if self._alpha_env is None or self._hops >= self._warp_due:
                self._alpha_env = estimate_warp(env, self._target_env, self._band_top)
                self._warp_due = self._hops + WARP_EVERY_HOPS
        if self._alpha_env is not None:
            trust = op.env_w / (op.env_w + _frames(2.0))
            found = min(max(self._alpha_env, alpha / WARP_TRUST), alpha * WARP_TRUST)
            alpha = math.exp(math.log(alpha) + trust * (math.log(found) - math.log(alpha)))
        if alpha > 1.0:
            alpha = math.exp(RAISE_SHARE * math.log(alpha))
        self._alpha = alpha
        warped = None if env is None else warp_envelope(env, alpha)
        if warped is None:
            self._eq = np.zeros(BINS)
        else:
            confidence = op.env_w / (op.env_w + _frames(PRIOR_SECONDS))
            eq = smooth_bins(self._target_env - warped, EQ_SMOOTH_BINS)
            # Nor is the EQ applied above a narrowband operator microphone's band edge (a headset or phone
            # line sampled at 8 kHz), where it would only lift hiss by up to EQ_LIMIT. Full-band voices
            # (festival's real speakers end at 6.7-7.6 kHz) are left as they were measured.
            operator_top = recorded_band_top(env)
            narrow = operator_top < NARROWBAND_HZ
            in_band = self._in_band * _band_fade(alpha * operator_top) if narrow else self._in_band
            self._eq = confidence * np.clip(eq, -EQ_LIMIT, EQ_LIMIT) * in_band
        self._f0_ratio = spread_ratio(p.log_f0_std, op.std)
        # Converted frames are normalised by their own average (what the operator's average becomes),
        # as the persona frames were by theirs; before any speech, assume the persona's.
        if self._frames is not None:  # only frame matching reads it
            mean_env = self._target_env if warped is None else warped + self._eq
            self._query_mean = self._to_cep @ hold_above(mean_env, self._band_top)

    def _convert_hop(self, window: np.ndarray) -> np.ndarray:
        self._hops += 1
        n = len(self._centres)
        gate = self.gate
        if gate is not None:
            level = gate.levels(window, self._gate_centres)
            level, level_ahead = level[:n], level[n:]
            if gate.idle(level, level_ahead):  # nothing to say: skip the analysis, keep the gate's state
                gate.gains(level, np.zeros(n, bool), np.zeros(n), level_ahead, n - 1)
                return self._synth.silence()
        elif np.max(np.abs(window)) < SILENCE_PEAK:
            return self._synth.silence()
        f0, sp, ap = analyse(window, self._centres)
        log_sp = np.log(sp + 1e-16)
        speech = np.ones(n, bool)
        gain = np.zeros(n)
        if gate is not None:
            gain = gate.gains(level, f0 > 0, gate.high_share(sp), level_ahead, n - 1) * (math.log(10) / 10)
            speech = gate.confirmed
        # The last frame is provisional: it is analysed again, with more future, next hop. Only speech
        # teaches the operator statistics (a hum's "pitch" would drag them).
        final = (f0[:-1] > 0) & speech[:-1]
        if final.any():
            self.operator.update(np.log(f0[:-1][final]), log_sp[:-1][final])
            self._update_mapping()
        p = self.profile
        voiced = f0 > 0
        new_f0 = np.zeros_like(f0)
        new_f0[voiced] = np.exp(toward_persona(np.log(f0[voiced]), self.operator.mean, p.log_f0_mean, self._f0_ratio))
        new_f0 = np.clip(new_f0, 0.0, 600.0)
        new_sp = warp_envelope(log_sp, self._alpha) + self._eq
        if self._frames is not None and voiced.any():
            new_sp[voiced] += self._match_frames(new_sp[voiced])
        # Keep each frame's power: the operator's loudness and dynamics pass through unchanged.
        power = np.log(sp.sum(axis=1)) - np.log(np.exp(new_sp).sum(axis=1))
        return self._synth.render(new_f0, new_sp + (power + gain)[:, None], ap)

    def _match_frames(self, log_env: np.ndarray) -> np.ndarray:
        """Per frame, the change of log envelope that moves its fine shape (mel-cepstra from KNN_FROM up)
        KNN_BLEND of the way to the mean of its KNN_K nearest persona frames. Neighbours are found between speaker-normalised shapes (each side
        minus its own average, so the search is not thrown by the average difference the warp and EQ
        leave); the target is the persona frames as they were, on the persona's own average. Level (c0)
        is left alone: the caller restores each frame's power."""
        cep = hold_above(log_env, self._band_top) @ self._to_cep.T
        query = cep - self._query_mean
        distance = self._frame_norms[None, :] - 2.0 * query @ self._frames.T  # + |query|^2, same per row
        nearest = np.argpartition(distance, KNN_K - 1, axis=1)[:, :KNN_K]
        target = self._frames[nearest].mean(axis=1) + self._persona_cep
        return KNN_BLEND * ((target - cep) @ self._from_detail.T) * self._in_band
