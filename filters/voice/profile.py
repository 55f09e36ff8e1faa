"""What the voice converter learns once from a persona's voice sample, and how voices are measured.

The same frame analysis (`analyse`) serves the persona profile and the live operator stream, so the
statistics on both sides share the estimator's biases and those cancel in the mapping. Pitch comes from
a local YIN tracker refined by WORLD's StoneMask rather than from DIO: DIO post-processes the whole
contour and is unreliable for about 100 ms at both ends of a buffer, which in a streaming window of a few
tens of milliseconds is everywhere. Envelope (CheapTrick) and aperiodicity (D4C) are WORLD's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyworld

from engine.audio_io import resample
from engine.errors import PersonaError
from engine.persona import check_voice

RATE = 16000
FRAME = 80  # samples: WORLD's customary 5 ms frame period at 16 kHz
FFT_SIZE = 1024  # CheapTrick's size for a 71 Hz floor at 16 kHz
F0_FLOOR = RATE / 240  # 66.7 Hz: the longest YIN lag below
F0_CEIL = 500.0
YIN_WINDOW = 384  # integration window; window + longest lag = 624 samples, i.e. +-19.5 ms around a frame
YIN_MAX_LAG = 240
YIN_DIP = 0.2  # first dip of the normalised difference below this is the period (YIN's rule)
YIN_VOICED = 0.45  # a frame is voiced when its best dip is below this
ENERGY_FLOOR = 1e-9  # mean-square below about -90 dBFS: nothing to measure
MIN_VOICED_SECONDS = 1.0
PROFILE_VERSION = 1

# How far a frame's analysis reaches beyond its centre (YIN, and CheapTrick at the pitch floor).
ANALYSIS_REACH = max((YIN_WINDOW + YIN_MAX_LAG) // 2, int(1.5 * RATE / 71.0) + 1)


def track_pitch(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """F0 in Hz at sample positions `centres` of `x` (0 where unvoiced), YIN then StoneMask."""
    x = np.asarray(x, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.int64)
    # Batches bound the memory for long samples (a 90 s sample has 18000 frames).
    f0 = np.concatenate([np.zeros(0)] + [_yin(x, centres[i:i + 1024]) for i in range(0, len(centres), 1024)])
    voiced = f0 > 0
    if voiced.any():
        refined = pyworld.stonemask(x, f0, centres / RATE, RATE)
        f0 = np.where(voiced & (refined > F0_FLOOR * 0.9) & (refined < F0_CEIL * 1.1), refined, f0)
    return f0


def _yin(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """YIN (de Cheveigne & Kawahara 2002) per frame, vectorised: first dip below threshold, parabolic peak."""
    span = YIN_WINDOW + YIN_MAX_LAG
    idx = centres[:, None] - span // 2 + np.arange(span)[None, :]
    inside = (idx >= 0) & (idx < len(x))
    seg = np.where(inside, x[np.clip(idx, 0, max(len(x) - 1, 0))], 0.0)
    nfft = 1024
    head = np.fft.rfft(seg[:, :YIN_WINDOW], nfft)
    corr = np.fft.irfft(np.conj(head) * np.fft.rfft(seg, nfft), nfft)[:, :YIN_MAX_LAG + 1]
    cum = np.concatenate([np.zeros((len(seg), 1)), np.cumsum(seg * seg, axis=1)], axis=1)
    energy = cum[:, YIN_WINDOW]
    lagged = cum[:, YIN_WINDOW:YIN_WINDOW + YIN_MAX_LAG + 1] - cum[:, :YIN_MAX_LAG + 1]
    diff = np.maximum(energy[:, None] + lagged - 2.0 * corr, 0.0)
    lags = np.arange(1, YIN_MAX_LAG + 1)
    norm = np.ones_like(diff)
    norm[:, 1:] = diff[:, 1:] * lags / np.maximum(np.cumsum(diff[:, 1:], axis=1), 1e-20)

    lo = int(RATE // F0_CEIL)
    band = norm[:, lo:YIN_MAX_LAG]
    below = band < YIN_DIP
    first = np.where(below.any(axis=1), below.argmax(axis=1), band.argmin(axis=1))
    # Walk from the first dip below the threshold down to its local minimum.
    rising = np.concatenate([band[:, 1:] >= band[:, :-1], np.ones((len(band), 1), bool)], axis=1)
    after = np.arange(band.shape[1])[None, :] >= first[:, None]
    best = (rising & after).argmax(axis=1)
    depth = band[np.arange(len(band)), best]
    lag = best + lo
    left = norm[np.arange(len(norm)), np.maximum(lag - 1, 1)]
    mid = norm[np.arange(len(norm)), lag]
    right = norm[np.arange(len(norm)), np.minimum(lag + 1, YIN_MAX_LAG)]
    curve = left - 2.0 * mid + right
    shift = np.where(curve > 0, 0.5 * (left - right) / np.where(curve > 0, curve, 1.0), 0.0)
    f0 = RATE / (lag + np.clip(shift, -1.0, 1.0))
    voiced = (depth < YIN_VOICED) & (energy > ENERGY_FLOOR * YIN_WINDOW)
    return np.where(voiced, f0, 0.0)


def analyse(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0, power envelope, aperiodicity) at sample positions `centres`; envelope rows have 513 bins."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    times = np.asarray(centres, dtype=np.float64) / RATE
    f0 = track_pitch(x, centres)
    sp = pyworld.cheaptrick(x, f0, times, RATE, fft_size=FFT_SIZE)
    ap = pyworld.d4c(x, f0, times, RATE, threshold=0.0, fft_size=FFT_SIZE)
    return f0, sp, ap


def active_frames(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Frames within speech: not in leading/trailing silence nor in pauses (30 dB below the loud part)."""
    cum = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    lo, hi = np.clip(centres - FRAME, 0, len(x)), np.clip(centres + FRAME, 0, len(x))
    frame_ms = (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)
    loud = np.percentile(frame_ms, 95) if len(frame_ms) else 0.0
    keep = frame_ms > max(loud * 1e-3, ENERGY_FLOOR)
    # Keep 50 ms around speech so onsets and decays count.
    grow = int(0.05 * RATE / FRAME)
    return np.convolve(keep.astype(float), np.ones(2 * grow + 1), mode="same") > 0


@dataclass
class VoiceStats:
    """Long-term measures of one voice: log-F0 mean/spread and average log envelope/aperiodicity."""

    log_f0_mean: float
    log_f0_std: float
    envelope: np.ndarray  # mean natural-log power envelope over voiced frames, FFT_SIZE // 2 + 1 bins
    aperiodicity: np.ndarray  # mean aperiodicity in dB over voiced frames, same bins
    voiced_seconds: float


def measure(samples: np.ndarray) -> VoiceStats:
    """Measure a 16 kHz voice; raises PersonaError when it holds too little voiced speech."""
    x = np.asarray(samples, dtype=np.float64)
    centres = np.arange(0, len(x), FRAME)
    active = active_frames(x, centres)
    if not active.any():
        raise PersonaError("the voice sample has no speech in it: give a recording in which the person speaks")
    first, last = np.flatnonzero(active)[[0, -1]]
    centres, active = centres[first:last + 1], active[first:last + 1]  # leading/trailing silence trimmed
    f0, sp, ap = analyse(x, centres)
    voiced = active & (f0 > 0)
    seconds = voiced.sum() * FRAME / RATE
    if seconds < MIN_VOICED_SECONDS:
        raise PersonaError(f"the voice sample holds only {seconds:.1f} s of voiced speech: give at least "
                           f"{MIN_VOICED_SECONDS:.0f} s of the person talking (15-90 s is best)")
    log_f0 = np.log(f0[voiced])
    # Octave errors would inflate the spread: leave out frames far from the median (robust 3-sigma).
    med = np.median(log_f0)
    mad = 1.4826 * np.median(np.abs(log_f0 - med)) + 1e-3
    log_f0 = log_f0[np.abs(log_f0 - med) < 3 * mad]
    return VoiceStats(
        log_f0_mean=float(log_f0.mean()),
        log_f0_std=float(max(log_f0.std(), 0.02)),
        envelope=np.log(sp[voiced] + 1e-16).mean(axis=0).astype(np.float32),
        aperiodicity=(20 * np.log10(np.clip(ap[voiced], 1e-3, 1.0))).mean(axis=0).astype(np.float32),
        voiced_seconds=float(seconds),
    )


@dataclass
class VoiceProfile(VoiceStats):
    """A persona's voice as the embedded converter needs it; learned once, stored (encrypted) as bytes."""

    rate: int = RATE

    @classmethod
    def fit(cls, samples: np.ndarray, rate: int = RATE) -> VoiceProfile:
        """Learn from a persona voice sample (any rate, mono); needs >= 3 s with >= 1 s voiced."""
        samples = resample(np.asarray(samples, dtype=np.float32), rate, RATE)
        check_voice(samples, RATE, "for the voice profile")
        stats = measure(samples)
        return cls(**stats.__dict__)

    def to_bytes(self) -> bytes:
        """npz in memory: the persona store encrypts it, so nothing is written to disk here."""
        buffer = io.BytesIO()
        np.savez(buffer, version=np.int32(PROFILE_VERSION), rate=np.int32(self.rate),
                 log_f0=np.array([self.log_f0_mean, self.log_f0_std]),
                 envelope=self.envelope.astype(np.float32), aperiodicity=self.aperiodicity.astype(np.float32),
                 voiced_seconds=np.float64(self.voiced_seconds))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VoiceProfile:
        """Inverse of to_bytes; refuses damaged data or another version with one actionable line."""
        bins = FFT_SIZE // 2 + 1
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                version, rate = int(z["version"]), int(z["rate"])
                log_f0, envelope, aper = z["log_f0"], z["envelope"], z["aperiodicity"]
                seconds = float(z["voiced_seconds"])
        except Exception as exc:  # zipfile, KeyError, ValueError: all mean unusable bytes
            raise PersonaError("the stored voice profile is damaged: learn it again from the voice sample") from exc
        if version != PROFILE_VERSION or rate != RATE:
            raise PersonaError(f"the stored voice profile is version {version} at {rate} Hz, this build reads "
                               f"version {PROFILE_VERSION} at {RATE} Hz: learn it again from the voice sample")
        if (log_f0.shape != (2,) or envelope.shape != (bins,) or aper.shape != (bins,)
                or not all(np.isfinite(a).all() for a in (log_f0, envelope, aper))):
            raise PersonaError("the stored voice profile is damaged: learn it again from the voice sample")
        return cls(log_f0_mean=float(log_f0[0]), log_f0_std=float(log_f0[1]), envelope=envelope.astype(np.float32),
                   aperiodicity=aper.astype(np.float32), voiced_seconds=seconds, rate=rate)
