"""Provenance mark in the voice: the persona and call hashes, spread over the speech, found in 3 seconds.

The payload and its coding are the video mark's (`make_payload`, salted CRC-32, K=7 convolutional code):
one format for both, so one audit lookup names the call whatever was recorded.

Scheme (why each part):
- A keyed, periodic (1.52 s) noise template, band-limited to 150-7000 Hz so it survives resampling to
  16 kHz and the speech codecs' wideband core. It is cut into 2 ms segments: most carry one coded bit each
  (its sign), a keyed fifth are a pilot with no data, which is how the detector finds the template's phase
  in a clip that starts anywhere. Every coded bit sits in three segments scattered over the period, so a
  pause or a codec burst costs a few scattered soft bits, which the Viterbi decoder shrugs off.
- Embedding shapes the template with the speech's own spectral envelope (an LPC fit per 10 ms block) and
  sets it a ratio below the block's level (the signal-to-mark ratio): SMR_DB under a tonal (voiced) block,
  NOISY_SMR_DB under a noise-like one (fricatives, breath, room noise), since noise masks noise far better
  than a tone does. The mark sits under the voice where the voice masks it, and codecs, which spend their
  bits where the voice is, keep it. In a pause it sits under the room's noise like under a fricative
  (a flat -66 dBFS floor there raised a quiet room's in-band noise by 3 dB, as much as adding a second
  room's noise); in digital silence it drops to a faint flat floor (-76 dBFS), so it runs continuously. It needs no look-ahead, so it adds no delay.
- Detection resamples to 16 kHz and whitens with the received sound's own LPC, which undoes the shaping
  (the mark is white again) and turns the voice into a small white residual, then takes away what repeats
  from the last pitch period (a voiced residual mostly does; the mark does not): after a 24 kbit/s SILK
  codec that recovers windows a plain LPC residual loses. Each 10 ms is normalised
  (gain changes do not matter), clipped (pitch pulses do not dominate) and weighted by the mark strength
  the embedder gave a block of its kind. Folding the clip onto the template period and one FFT
  correlation with the pilot give the phase at 48 kHz precision; data segments are then read at the best
  few phases.
- A window counts as found only if the payload decoded at one of the `SYNC_TRIES` tallest pilot peaks
  passes the key-salted CRC-32: unmarked sound passes with probability 2**-32 per try, so below 7e-10
  per window (7e-7 over 1000 windows). The pilot peak itself is no test for presence: a sweep can fold
  into a few tall peaks (8 standard deviations seen), while a marked clip after a 24 kbit/s codec may
  peak at 6.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from engine.errors import MediaError
from filters.watermark.coding import CODED_BITS, PAYLOAD_BYTES, check_info, conv_encode, crc_salt, info_bits, \
    viterbi_decode
from filters.watermark.detect import _NamesPayload
from filters.watermark.embed import DEFAULT_KEY, make_payload

DETECT_RATE = 16000
SEGMENT = 32  # samples at 16 kHz per segment (2 ms)
SEGMENTS = 760  # per period: 3 copies of each coded bit + pilot
COPIES = 3
PILOT_SEGMENTS = SEGMENTS - COPIES * CODED_BITS  # 148, about a fifth
PERIOD = SEGMENT * SEGMENTS  # 24320 samples at 16 kHz = 1.52 s; a multiple of 640, so whole at 44.1/48 kHz
BAND_HZ = (150.0, 7000.0)
SMR_DB = 20.0  # voice level over mark level in a tonal (voiced) 10 ms block
NOISY_SMR_DB = 12.0  # ... and in a noise-like one (fricatives, breath, room noise), which masks noise far better
FLATNESS = (0.03, 0.25)  # spectral flatness from which a block counts as partly, and as fully, noise-like
FLOOR_RMS = 10 ** (-76 / 20)  # the mark's level in digital silence (-76 dBFS), under any room's noise
SHAPED_ABOVE = FLOOR_RMS * 10 ** (min(SMR_DB, NOISY_SMR_DB) / 20)  # a block's level under which the floor wins
LPC_ORDER = 16
WINDOW_S = 3.0  # detection window
SYNC_TRIES = 3  # phases decoded per window
CLIP = 2.5  # normalised residual clipped here
PITCH_LAGS = (40, 320)  # samples at 16 kHz the detector's pitch predictor looks back: 2.5-20 ms (400-50 Hz)


@dataclass(frozen=True)
class _Template:
    """The key's noise chips (one period at 16 kHz), and which segment is pilot or carries which coded bit."""

    pilot: np.ndarray  # (SEGMENTS,) bool
    bit_of: np.ndarray  # (SEGMENTS,) coded-bit index of each data segment, -1 for pilot
    chips: np.ndarray  # (PERIOD,) white chips at 16 kHz


@functools.lru_cache(maxsize=4)
def _template(key: bytes) -> _Template:
    seed = int.from_bytes(key_digest(key, b"voice-template")[:8], "big")
    rng = np.random.default_rng(seed)
    order = rng.permutation(SEGMENTS)
    pilot = np.zeros(SEGMENTS, bool)
    pilot[order[:PILOT_SEGMENTS]] = True
    bit_of = np.full(SEGMENTS, -1, np.int64)
    bit_of[np.sort(order[PILOT_SEGMENTS:])] = rng.permutation(np.tile(np.arange(CODED_BITS), COPIES))
    chips = rng.standard_normal(PERIOD)
    return _Template(pilot, bit_of, chips)


def key_digest(key: bytes, purpose: bytes) -> bytes:
    """A key-derived seed for one purpose, so the voice template shares nothing with the video layout."""
    return hashlib.sha256(b"evercall-voice:" + purpose + b":" + key).digest()


def _band_limited(x: np.ndarray, rate_out: int) -> np.ndarray:
    """Periodic band-pass of a 16 kHz period, resampled exactly (in the FFT domain) to `rate_out`."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / DETECT_RATE)
    spec[(freqs < BAND_HZ[0]) | (freqs > BAND_HZ[1])] = 0
    n_out = len(x) * rate_out // DETECT_RATE
    out = np.fft.irfft(spec, n_out) * (n_out / len(x))
    return out / np.sqrt(np.mean(out**2))


def _segment_signs(t: _Template, codeword: np.ndarray) -> np.ndarray:
    """+1 for pilot segments, and each data segment's coded bit as +1 (a 0) or -1 (a 1)."""
    signs = np.ones(SEGMENTS)
    data = ~t.pilot
    signs[data] = 1.0 - 2.0 * codeword[t.bit_of[data]]
    return signs


@functools.lru_cache(maxsize=8)
def _mark_waveform(key: bytes, payload: bytes, rate: int) -> np.ndarray:
    """One period of the marked template at `rate`, unit RMS (float32)."""
    t = _template(key)
    codeword = conv_encode(info_bits(payload, crc_salt(key)))
    return _band_limited(t.chips * np.repeat(_segment_signs(t, codeword), SEGMENT), rate).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _references(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(pilot, carrier) references at 16 kHz for the three 48 kHz phases: each (3, PERIOD)."""
    t = _template(key)
    pilot48 = _band_limited(t.chips * np.repeat(t.pilot.astype(float), SEGMENT), 3 * DETECT_RATE)
    carrier48 = _band_limited(t.chips, 3 * DETECT_RATE)
    return np.stack([pilot48[p::3] for p in range(3)]), np.stack([carrier48[p::3] for p in range(3)])


# LPC helpers


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Prediction-error filter coefficients (batch, order+1) from autocorrelations (batch, >order)."""
    r = np.atleast_2d(r)
    a = np.zeros((r.shape[0], order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.einsum("bj,bj->b", a[:, 1:i], r[:, i - 1:0:-1])
        k = -acc / err
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1:0:-1]
        a[:, i] = k
        err = err * (1.0 - k * k)
    return a


_LAG_WINDOW = np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(LPC_ORDER + 1) / DETECT_RATE) ** 2)


def _lpc(frames: np.ndarray, lag_window: np.ndarray, band: slice) -> tuple[np.ndarray, np.ndarray]:
    """LPC (batch, order+1) of windowed frames (lag-windowed, slightly regularised for stability), and each
    frame's spectral flatness over the mark's band: near 0.5 for noise, far lower for a voiced sound."""
    n = frames.shape[-1]
    spec = np.fft.rfft(frames, 2 * n)
    power = spec.real**2 + spec.imag**2
    r = np.fft.irfft(power)[..., : LPC_ORDER + 1] * lag_window
    r[..., 0] = r[..., 0] * 1.0001 + 1e-12
    inband = power[..., band] + 1e-20
    flatness = np.exp(np.mean(np.log(inband), axis=-1)) / np.mean(inband, axis=-1)
    return _levinson(r, LPC_ORDER), flatness


def _band_bins(frame: int, rate: int) -> slice:
    """rfft bins (of a frame zero-padded to twice its length) inside the mark's band."""
    step = rate / (2 * frame)
    return slice(int(np.ceil(BAND_HZ[0] / step)), int(BAND_HZ[1] / step) + 1)


def smr_for(flatness: np.ndarray | float) -> np.ndarray:
    """Signal-to-mark ratio (dB) for a block of this flatness: SMR_DB when tonal, NOISY_SMR_DB when noise-like."""
    return np.interp(flatness, FLATNESS, (SMR_DB, NOISY_SMR_DB))


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


class VoiceMarkEmbedder:
    """Adds the mark to a stream of mono float blocks (any length, usually 10 ms), sample for sample, no delay."""

    def __init__(self, payload: bytes, rate: int = 48000, key: bytes = DEFAULT_KEY) -> None:
        if len(payload) != PAYLOAD_BYTES:
            raise ValueError(f"payload must be {PAYLOAD_BYTES} bytes (see make_payload), got {len(payload)}")
        if (PERIOD * rate) % DETECT_RATE:
            raise ValueError(f"sample rate {rate} Hz is not supported by the voice mark: use 16, 32, 44.1 or 48 kHz")
        self.payload, self.rate, self.key = bytes(payload), rate, bytes(key)
        self._wave = _mark_waveform(self.key, self.payload, rate)
        self._pos = 0
        self._zi = np.zeros(LPC_ORDER)
        self._gain = 0.0
        self._prev = np.zeros(0, np.float32)
        self._lag_window = np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(LPC_ORDER + 1) / rate) ** 2)

    def _template_block(self, n: int) -> np.ndarray:
        start, period = self._pos, len(self._wave)
        self._pos = (start + n) % period
        if start + n <= period:
            return self._wave[start:start + n]
        return self._wave[(start + np.arange(n)) % period]

    def process(self, samples: np.ndarray) -> np.ndarray:
        """The block with the mark added (float32, same length)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = len(x)
        if n == 0:
            return x.copy()
        m = self._template_block(n)
        level = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        target = 0.0
        if level > SHAPED_ABOVE:  # quieter, the shaped mark would fall under the floor anyway: no LPC to work out
            frame = np.concatenate([self._prev, x])[-2 * max(n, 240):]
            a, flatness = _lpc((frame * _hann(len(frame)))[None], self._lag_window, _band_bins(len(frame), self.rate))
            a = a[0]
            target = level * 10 ** (-float(smr_for(flatness[0])) / 20)
        if target <= FLOOR_RMS:
            a = np.zeros(LPC_ORDER + 1)
            a[0] = 1.0
            target = FLOOR_RMS
        shaped, self._zi = lfilter([1.0], a, m, zi=self._zi)
        shaped_rms = float(np.sqrt(np.mean(shaped**2))) + 1e-12
        gain = target / shaped_rms
        # Rising: ramp up over the block (no click). Falling: drop at once, so a mark never outlasts a word.
        ramp = np.linspace(self._gain, gain, n, endpoint=False) if 0 < self._gain < gain else gain
        self._gain = gain
        self._prev = x[-n:]
        return (x + ramp * shaped).astype(np.float32)

    __call__ = process


def _pitch_removed(e: np.ndarray) -> np.ndarray:
    """LPC residual blocks (blocks, hop) less a one-tap long-term (pitch) prediction from the residual before.

    A voiced block's residual is mostly a repeat of the last pitch period, which the mark is not: taking the
    best-fitting earlier period away (lag 2.5-20 ms, gain 0-1) leaves the mark and removes much of the voice
    that hides it. The lag and gain come from the received sound alone."""
    blocks, hop = e.shape
    lo, hi = PITCH_LAGS
    flat = np.concatenate([np.zeros(hi), e.reshape(-1)])
    past = sliding_window_view(flat, hi + hop)[::hop][:blocks]  # block b: hi samples before it, then itself
    n = 1 << (hi + 2 * hop - 1).bit_length()
    # corr[b, j] = sum_h e[b, h] * past[b, j + h]; lag T = hi - j
    corr = np.fft.irfft(np.fft.rfft(past, n, axis=1) * np.conj(np.fft.rfft(e, n, axis=1)), n, axis=1)[:, : hi + 1]
    sq = np.concatenate([np.zeros((blocks, 1)), np.cumsum(past**2, axis=1)], axis=1)
    energy = sq[:, hop:hop + hi + 1] - sq[:, : hi + 1] + 1e-20  # energy of past[b, j:j+hop]
    js = np.arange(hi - lo + 1)  # lags hi down to lo
    explained = np.where(corr[:, js] > 0, corr[:, js] ** 2 / energy[:, js], 0.0)
    best = js[np.argmax(explained, axis=1)]
    rows = np.arange(blocks)
    gain = np.clip(corr[rows, best] / energy[rows, best], 0.0, 1.0)
    previous = past[rows[:, None], best[:, None] + np.arange(hop)[None, :]]
    return e - gain[:, None] * previous


def _whitened(x: np.ndarray) -> np.ndarray:
    """LPC and pitch residual per 10 ms (LPC from a 20 ms window), normalised per 10 ms, clipped and weighted."""
    hop = DETECT_RATE // 100
    blocks = len(x) // hop
    x = x[: blocks * hop].astype(np.float64)
    if blocks == 0:
        return np.zeros(0)
    padded = np.concatenate([np.zeros(hop // 2), x, np.zeros(hop // 2 + hop)])
    frames = sliding_window_view(padded, 2 * hop)[::hop][:blocks]
    a, flatness = _lpc(frames * _hann(2 * hop), _LAG_WINDOW, _band_bins(2 * hop, DETECT_RATE))  # (blocks, order+1)
    lagged = sliding_window_view(np.concatenate([np.zeros(LPC_ORDER), x]), LPC_ORDER + 1)[:, ::-1]
    e = _pitch_removed(np.einsum("bhk,bk->bh", lagged.reshape(blocks, hop, LPC_ORDER + 1), a))
    rms = np.sqrt(np.mean(e**2, axis=1, keepdims=True))
    floor = max(float(np.median(rms)) * 1e-3, 1e-9)
    # Weight each block by the mark-to-voice ratio the embedder gave it (noise-like blocks carry more).
    weight = 10 ** ((SMR_DB - smr_for(flatness)) / 20)
    return (np.clip(e / np.maximum(rms, floor), -CLIP, CLIP) * weight[:, None]).reshape(-1)


@dataclass(frozen=True)
class AudioWindowResult(_NamesPayload):
    """Outcome for one window of audio. `sync_z` is the pilot peak in robust standard deviations."""

    start_s: float
    seconds: float
    found: bool
    payload: bytes | None
    sync_z: float
    score: float


class VoiceMarkDetector:
    """Finds the mark in mono 16 kHz audio."""

    def __init__(self, key: bytes = DEFAULT_KEY) -> None:
        self.key = bytes(key)
        self._salt = crc_salt(self.key)
        self._t = _template(self.key)
        pilot, carrier = _references(self.key)
        self._pilot_f = np.conj(np.fft.rfft(pilot, axis=1))
        self._carrier = carrier
        self._data = ~self._t.pilot

    def detect(self, x16: np.ndarray, start_s: float = 0.0) -> AudioWindowResult:
        """Look for the mark in `x16` (mono, 16 kHz); one result for the whole clip."""
        w = _whitened(np.asarray(x16))
        return self.decide(self.fold(w), start_s, len(x16) / DETECT_RATE)

    @staticmethod
    def fold(whitened: np.ndarray, offset: int = 0) -> np.ndarray:
        """The whitened clip summed onto one template period; `offset` is its first sample's index in a
        longer recording, so the folds of consecutive clips add up to the fold of the whole."""
        index = (offset + np.arange(len(whitened))) % PERIOD
        return np.bincount(index, weights=whitened, minlength=PERIOD)

    def decide(self, fold: np.ndarray, start_s: float, seconds: float) -> AudioWindowResult:
        """Find the template's phase from the pilot, then decode the best few phases until one checks out."""
        if seconds * DETECT_RATE < PERIOD // 2 or not fold.any():
            return AudioWindowResult(start_s, seconds, False, None, 0.0, 0.0)
        xc = np.fft.irfft(np.fft.rfft(fold)[None, :] * self._pilot_f, PERIOD, axis=1)  # (3 phases, PERIOD)
        med = np.median(xc)
        # Robust spread, but never below the plain one: a sweep or a click train folds into a few tall
        # spikes that a median-based spread alone would call a peak.
        spread = max(1.4826 * float(np.median(np.abs(xc - med))), float(np.std(xc)))
        z = (xc - med) / (spread + 1e-12)
        tried: list[int] = []
        for index in np.argsort(z, axis=None)[::-1]:
            phase, lag = divmod(int(index), PERIOD)
            if any(min(abs(lag - t), PERIOD - abs(lag - t)) <= 2 for t in tried):
                continue  # a neighbour of a phase already decoded
            tried.append(lag)
            payload, score = self._decode(np.roll(fold, -lag), phase)
            if payload is not None:
                return AudioWindowResult(start_s, seconds, True, payload, float(z[phase, lag]), score)
            if len(tried) >= SYNC_TRIES:
                break
        return AudioWindowResult(start_s, seconds, False, None, float(z.max()), 0.0)

    def _decode(self, aligned: np.ndarray, phase: int) -> tuple[bytes | None, float]:
        per_segment = (aligned * self._carrier[phase]).reshape(SEGMENTS, SEGMENT).sum(axis=1)
        soft = np.bincount(self._t.bit_of[self._data], weights=per_segment[self._data], minlength=CODED_BITS)
        soft = soft / (np.std(soft) + 1e-12)
        bits = viterbi_decode(soft)
        payload = check_info(bits, self._salt)
        score = float(soft @ (1.0 - 2.0 * conv_encode(bits))) / float(np.abs(soft).sum() + 1e-12)
        return payload, score


@dataclass(frozen=True)
class AudioVerifyReport(_NamesPayload):
    """What a sound track proves: whether it carries the voice mark, and for which persona and call."""

    path: str
    seconds: float
    windows: list[AudioWindowResult] = field(repr=False)
    whole: AudioWindowResult  # the whole track folded together: catches a mark too faint for any window
    found: bool
    payload: bytes | None
    fraction_found: float


def voice_provenance_mark(persona_id: str, call_id: str, rate: int):
    """The streaming voice mark for one call: a block -> marked block callable (same length, no delay)."""
    return VoiceMarkEmbedder(make_payload(persona_id, call_id), rate).process


def mark_track(samples: np.ndarray, persona_id: str, call_id: str, rate: int) -> np.ndarray:
    """A whole sound track marked exactly as a call's voice is, 10 ms at a time (for renders)."""
    mark = voice_provenance_mark(persona_id, call_id, rate)
    block = rate // 100
    x = np.asarray(samples, np.float32).reshape(-1)
    return np.concatenate([mark(x[i:i + block]) for i in range(0, len(x), block)]) if len(x) else x.copy()


def _scan(x16: np.ndarray, detector: VoiceMarkDetector) -> tuple[list[AudioWindowResult], AudioWindowResult]:
    """Results per 3 s window, the windows overlapping by half (a tail shorter than one template period is
    left to the whole), and for the whole clip, whose fold is the sum of the folds of every other window.

    The overlap is for recordings with a break in them: a call drops a few milliseconds of voice when its
    output falls behind, which shifts the mark's phase after the break, and a window across the break folds
    two phases together; a window half a step later lies whole on one side of it."""
    size = int(WINDOW_S * DETECT_RATE)
    step = size // 2
    windows: list[AudioWindowResult] = []
    total = np.zeros(PERIOD)
    for start in range(0, max(len(x16) - step, 1), step):
        piece = x16[start:start + size]
        fold = detector.fold(_whitened(piece), start)
        if start % size == 0:
            total += fold
        if len(piece) >= PERIOD:
            windows.append(detector.decide(fold, start / DETECT_RATE, len(piece) / DETECT_RATE))
    return windows, detector.decide(total, 0.0, len(x16) / DETECT_RATE)


def detect_audio(samples: np.ndarray, rate: int, key: bytes = DEFAULT_KEY) -> list[AudioWindowResult]:
    """Per 3-second window (overlapping by half) of mono `samples` at `rate`: whether the mark is there and
    what it carries."""
    from engine.audio_io import resample

    return _scan(resample(np.asarray(samples, np.float32), rate, DETECT_RATE), VoiceMarkDetector(key))[0]


def verify_audio(path: str | Path, key: bytes = DEFAULT_KEY) -> AudioVerifyReport:
    """Read a file's sound (WAV, MP3, OGG, M4A, or a video's track) and report the voice mark."""
    from engine.audio_io import read_audio, resample

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"No file at {path}: check the path.")
    samples, rate = read_audio(path)
    x16 = resample(samples, rate, DETECT_RATE)
    windows, whole = _scan(x16, VoiceMarkDetector(key))
    found_payloads = [w.payload for w in windows if w.found]
    # Windows of a spliced recording may carry different payloads: report the most common one.
    payload = Counter(found_payloads).most_common(1)[0][0] if found_payloads else whole.payload
    return AudioVerifyReport(
        path=str(path),
        seconds=len(x16) / DETECT_RATE,
        windows=windows,
        whole=whole,
        found=payload is not None,
        payload=payload,
        fraction_found=len(found_payloads) / len(windows) if windows else 0.0,
    )


def signal_to_mark_db(clean: np.ndarray, marked: np.ndarray, rate: int, active_dbfs: float = -40.0) -> float:
    """Energy of the voice over energy of the mark (dB), over the 10 ms blocks where the voice is above
    `active_dbfs` (in silence the ratio means nothing: there the mark is a fixed faint floor)."""
    block = rate // 100
    n = min(len(clean), len(marked)) // block * block
    s = np.asarray(clean[:n], np.float64).reshape(-1, block)
    m = np.asarray(marked[:n], np.float64).reshape(-1, block) - s
    active = np.sqrt(np.mean(s**2, axis=1)) > 10 ** (active_dbfs / 20)
    return float(10 * np.log10(np.sum(s[active] ** 2) / max(np.sum(m[active] ** 2), 1e-30)))
