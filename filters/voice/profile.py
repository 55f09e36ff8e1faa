"""What the voice converter learns once from a persona's voice sample, and how voices are measured.

The same frame analysis (`analyse`) serves the persona profile and the live operator stream, so the
statistics on both sides share the estimator's biases and those cancel in the mapping. Pitch comes from
a local YIN tracker refined by WORLD's StoneMask rather than from DIO: DIO post-processes the whole
contour and is unreliable for about 100 ms at both ends of a buffer, which in a streaming window of a few
tens of milliseconds is everywhere. Envelope (CheapTrick) and aperiodicity (D4C) are WORLD's.

Besides averages, the profile keeps a few thousand of the persona's own voiced envelope frames as
mel-cepstra minus the persona's mean (speaker-normalised). The converter moves each converted frame
toward the mean of its nearest persona frames, in the spirit of kNN-VC: the averages move the voice
toward the persona, the frames bring back the persona's actual spectral detail.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyworld
from scipy.fft import dct

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
YIN_CONTINUE = 0.7  # ... or below this next to a voiced frame (hysteresis), ...
YIN_CONTINUE_RATIO = 1.2  # ... with a pitch within this ratio of that frame's, ...
YIN_CONTINUE_FRAMES = 8  # ... for at most this many frames from a surely voiced one
ENERGY_FLOOR = 1e-9  # mean-square below about -90 dBFS: nothing to measure
MIN_VOICED_SECONDS = 1.0
PROFILE_VERSION = 2  # 2 added the persona envelope frames
MEL_POINTS = 64  # log envelope sampled at this many mel-spaced frequencies ...
CEPSTRA = 40  # ... and kept as this many cepstral coefficients; c0 (the level) is not stored
MAX_FRAMES = 3000  # persona frames kept, evenly spread over the sample: at most 230 kB as float16
FRAME_LEVEL_DB = 15.0  # voiced frames this far below the median voiced level are noise-dominated: left out
BAND_FLOOR_DB = 55.0  # above the recording's band edge (a phone's 3.4-4 kHz) the envelope is this far down

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
    loud = energy > ENERGY_FLOOR * YIN_WINDOW
    voiced = (depth < YIN_VOICED) & loud
    # Hysteresis: a weaker dip continues a voiced run (the edges of vowels, voiced consonants: m, n, l,
    # v, z), as long as its pitch stays near its neighbour's (no octave jumps). Without it YIN marked
    # about 25% fewer frames voiced than WORLD's Harvest, and those frames were synthesised as noise.
    weak = (depth < YIN_CONTINUE) & loud & ~voiced
    if weak.any() and len(centres) > 1 and np.all(np.diff(centres) == FRAME):
        steady = np.abs(np.log(f0[1:] / f0[:-1])) < np.log(YIN_CONTINUE_RATIO)  # neighbours' pitch agrees
        for _ in range(YIN_CONTINUE_FRAMES):
            left = np.zeros_like(voiced)
            left[1:] = voiced[:-1] & steady
            right = np.zeros_like(voiced)
            right[:-1] = voiced[1:] & steady
            grow = weak & (left | right)
            if not grow.any():
                break
            voiced |= grow
            weak &= ~grow
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
    return _stats(*_speech_analysis(samples))


def measure_operator(samples: np.ndarray) -> VoiceStats:
    """`measure` for a converter's warm-up on the operator's speech, with the operator's fix in the error."""
    from engine.errors import MediaError

    try:
        return measure(np.asarray(samples, dtype=np.float32))
    except PersonaError as exc:
        raise MediaError("the operator warm-up recording has too little speech: record a few sentences "
                         "in a quiet room") from exc


def _speech_analysis(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(f0, envelope, aperiodicity, voiced) over the speech of a 16 kHz voice, silence around it trimmed."""
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
    return f0, sp, ap, voiced


def _stats(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, voiced: np.ndarray) -> VoiceStats:
    seconds = voiced.sum() * FRAME / RATE
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


@lru_cache(maxsize=1)
def cepstral_maps() -> tuple[np.ndarray, np.ndarray]:
    """(to_cepstrum, from_cepstrum): linear maps between a natural-log envelope (FFT bins) and mel-cepstra
    c1..c{CEPSTRA-1}. Both sides of the frame matching go through the same maps, so they agree."""
    bins = FFT_SIZE // 2 + 1
    hz_per_bin = RATE / FFT_SIZE
    mel_top = 2595.0 * np.log10(1.0 + RATE / 2 / 700.0)
    points = 700.0 * (10.0 ** (np.linspace(0.0, mel_top, MEL_POINTS) / 2595.0) - 1.0)
    to_mel = np.zeros((MEL_POINTS, bins))  # linear interpolation of the envelope at mel-spaced points
    pos = points / hz_per_bin
    i0 = np.minimum(pos.astype(np.int64), bins - 2)
    to_mel[np.arange(MEL_POINTS), i0] = 1.0 - (pos - i0)
    to_mel[np.arange(MEL_POINTS), i0 + 1] += pos - i0
    from_mel = np.zeros((bins, MEL_POINTS))  # and back, interpolating between mel points
    back = np.interp(np.arange(bins) * hz_per_bin, points, np.arange(MEL_POINTS))
    j0 = np.minimum(back.astype(np.int64), MEL_POINTS - 2)
    from_mel[np.arange(bins), j0] = 1.0 - (back - j0)
    from_mel[np.arange(bins), j0 + 1] += back - j0
    basis = dct(np.eye(MEL_POINTS), norm="ortho", axis=0)[1:CEPSTRA]
    return basis @ to_mel, from_mel @ basis.T


def recorded_band_top(envelope: np.ndarray) -> float:
    """Where a sample's average log envelope ends (Hz): a phone or voicemail recording carries nothing
    above about 4 kHz, and learning "nothing" there would strip the converted voice's top end."""
    level_db = np.asarray(envelope, dtype=np.float64) * (10.0 / np.log(10.0))
    low = level_db < level_db.max() - BAND_FLOOR_DB
    quiet_above = np.flip(np.cumprod(np.flip(low)).astype(bool))  # this bin and all above are empty
    first = int(2500 * FFT_SIZE / RATE)
    empty = np.flatnonzero(quiet_above[first:])
    return float((first + empty[0]) * RATE / FFT_SIZE) if len(empty) else RATE / 2


def hold_above(log_env: np.ndarray, top_hz: float) -> np.ndarray:
    """Log envelope(s) with every bin from `top_hz` up replaced by the last bin below it."""
    top = int(top_hz * FFT_SIZE / RATE)
    if top >= log_env.shape[-1] - 1:
        return log_env
    held = np.array(log_env, dtype=np.float64)
    held[..., top:] = held[..., top - 1:top]
    return held


def persona_frames(sp: np.ndarray, voiced: np.ndarray, mean_envelope: np.ndarray,
                   band_top_hz: float = RATE / 2) -> np.ndarray:
    """The persona's voiced envelope frames as mel-cepstra minus those of the persona's mean log envelope
    (speaker-normalised; float16, rows: frames).

    Frames far below the typical voiced level are left out: in a phone or room recording they are the
    ones noise dominates (the sample's silences and noise were trimmed already)."""
    frames = sp[voiced]
    level = 10.0 * np.log10(frames.sum(axis=1) + 1e-30)
    frames = frames[level > np.median(level) - FRAME_LEVEL_DB]
    if len(frames) > MAX_FRAMES:
        frames = frames[np.linspace(0, len(frames) - 1, MAX_FRAMES).astype(np.int64)]
    to_cep = cepstral_maps()[0]
    relative = hold_above(np.log(frames + 1e-16), band_top_hz) - hold_above(mean_envelope, band_top_hz)
    return (relative @ to_cep.T).astype(np.float16)


@dataclass
class VoiceProfile(VoiceStats):
    """A persona's voice as the embedded converter needs it; learned once, stored (encrypted) as bytes."""

    rate: int = RATE
    band_top_hz: float = RATE / 2  # the persona sample's bandwidth: nothing is learned above it
    # Persona frames relative to `envelope` as mel-cepstra (see `persona_frames`); empty: no frame matching.
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, CEPSTRA - 1), np.float16))

    @classmethod
    def fit(cls, samples: np.ndarray, rate: int = RATE) -> VoiceProfile:
        """Learn from a persona voice sample (any rate, mono); needs >= 3 s with >= 1 s voiced."""
        samples = resample(np.asarray(samples, dtype=np.float32), rate, RATE)
        check_voice(samples, RATE, "for the voice profile")
        f0, sp, ap, voiced = _speech_analysis(samples)
        stats = _stats(f0, sp, ap, voiced)
        top = recorded_band_top(stats.envelope)
        return cls(**stats.__dict__, band_top_hz=top, frames=persona_frames(sp, voiced, stats.envelope, top))

    def to_bytes(self) -> bytes:
        """npz in memory: the persona store encrypts it, so nothing is written to disk here."""
        buffer = io.BytesIO()
        np.savez(buffer, version=np.int32(PROFILE_VERSION), rate=np.int32(self.rate),
                 log_f0=np.array([self.log_f0_mean, self.log_f0_std]),
                 envelope=self.envelope.astype(np.float32), aperiodicity=self.aperiodicity.astype(np.float32),
                 voiced_seconds=np.float64(self.voiced_seconds), band_top_hz=np.float64(self.band_top_hz),
                 frames=self.frames.astype(np.float16))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VoiceProfile:
        """Inverse of to_bytes; refuses damaged data or another version with one actionable line."""
        bins = FFT_SIZE // 2 + 1
        damaged = "the stored voice profile is damaged: learn it again from the voice sample"
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                version, rate = int(z["version"]), int(z["rate"])
                if version == PROFILE_VERSION:
                    log_f0, envelope, aper = z["log_f0"], z["envelope"], z["aperiodicity"]
                    seconds, top = float(z["voiced_seconds"]), float(z["band_top_hz"])
                    frames = z["frames"]
        except Exception as exc:  # zipfile, KeyError, ValueError: all mean unusable bytes
            raise PersonaError(damaged) from exc
        if version != PROFILE_VERSION or rate != RATE:
            raise PersonaError(f"the stored voice profile is version {version} at {rate} Hz, this build reads "
                               f"version {PROFILE_VERSION} at {RATE} Hz: learn it again from the voice sample")
        if (log_f0.shape != (2,) or envelope.shape != (bins,) or aper.shape != (bins,)
                or not 1000 <= top <= RATE / 2
                or frames.ndim != 2 or frames.shape[1] != CEPSTRA - 1 or frames.dtype != np.float16
                or not all(np.isfinite(a).all() for a in (log_f0, envelope, aper, frames))):
            raise PersonaError(damaged)
        return cls(log_f0_mean=float(log_f0[0]), log_f0_std=float(log_f0[1]), envelope=envelope.astype(np.float32),
                   aperiodicity=aper.astype(np.float32), voiced_seconds=seconds, rate=rate, band_top_hz=top,
                   frames=frames)
