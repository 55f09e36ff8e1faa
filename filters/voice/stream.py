"""The voice converter at any I/O rate (48 kHz for WebRTC, 44.1 kHz, ...): resample to 16 kHz and back.

Same contract as the converter: every call returns as many samples as it was given, and the output is
the converted input delayed by a constant, known `latency_s`, so video can be delayed by exactly that.

Resampling is our own streaming polyphase FIR (Kaiser-windowed sinc, linear phase, 60 dB) rather than
`soxr.ResampleStream`: soxr holds output back in internal blocks, measured here at up to 36.6 ms per
direction for its HQ recipe (20 ms for LQ, at 32 dB aliasing; QQ has no lag but 16 dB), with no
documented bound, so a constant delay would rest on a guessed margin. This filter costs 2.2 ms per
direction, and its output count is a closed-form function of the input count, so the delay is exact.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from engine.voice_contract import VoiceFilter
from filters.voice.profile import RATE, VoiceProfile
from filters.voice.world_stream import WorldVoiceConverter, as_mono_float

TRANSITION_HZ = 1000.0  # passband to 7 kHz, stopband from 8 kHz at the 16 kHz side
ATTENUATION_DB = 60.0


class PolyphaseResampler:
    """Streaming rational-ratio resampler; output sample m is the input at time m * rate_in / rate_out.

    Output m needs input up to index floor((m * M + c) / L), so after n inputs exactly
    `available(n)` outputs exist, whatever the chunking."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        proto_rate = rate_in * self.up
        edge = min(rate_in, rate_out) / 2
        numtaps, beta = signal.kaiserord(ATTENUATION_DB, TRANSITION_HZ / (proto_rate / 2))
        numtaps += 1 - numtaps % 2  # odd: the centre tap sits on a sample, so the delay is exact
        h = signal.firwin(numtaps, edge - TRANSITION_HZ / 2, window=("kaiser", beta), fs=proto_rate) * self.up
        self.centre = (numtaps - 1) // 2
        self.width = -(-numtaps // self.up)  # input taps per output sample
        padded = np.zeros(self.width * self.up)
        padded[:numtaps] = h
        self.taps = padded.reshape(self.width, self.up).T.copy()  # taps[phase, j] pairs with x[n_hi - j]
        self.reset()

    def reset(self) -> None:
        self.history = np.zeros(self.width)  # silence before the stream began
        self.seen = 0
        self.made = 0

    def available(self, n_in: int | np.ndarray) -> int | np.ndarray:
        """Outputs that exist after `n_in` input samples."""
        return np.maximum(0, -((self.centre - np.asarray(n_in) * self.up) // self.down))

    def process(self, x: np.ndarray) -> np.ndarray:
        self.history = np.concatenate([self.history, np.asarray(x, dtype=np.float64)])
        self.seen += len(x)
        end = int(self.available(self.seen))
        m = np.arange(self.made, end)
        self.made = end
        base = self.seen - len(self.history)  # absolute index of history[0]
        u = m * self.down + self.centre
        newest, phase = u // self.up, u % self.up
        idx = newest[:, None] - np.arange(self.width)[None, :] - base
        out = np.einsum("ij,ij->i", self.taps[phase], self.history[idx]) if len(m) else np.zeros(0)
        self.history = self.history[-self.width:]
        return out


class VoiceStream:
    """Persona voice conversion at `rate` Hz around a 16 kHz converter (WORLD unless another is given).

    It is itself a VoiceFilter (engine/voice_contract.py), at `rate`: the same contract at both levels."""

    def __init__(self, profile: VoiceProfile | None, rate: int, *, converter: VoiceFilter | None = None,
                 **converter_options: float) -> None:
        """`converter` replaces the WORLD converter (tests pass a plain delay line to measure timing)."""
        if rate < 8000 or rate > 192000:
            raise ValueError(f"audio rate {rate} Hz is not supported: use 8-192 kHz")
        if converter is None:
            if profile is None:
                raise ValueError("give a voice profile or a converter")
            converter = WorldVoiceConverter(profile, **converter_options)
        self.rate = rate
        self.converter = converter
        self._resampling = rate != RATE
        if self._resampling:
            self._down = PolyphaseResampler(rate, RATE)
            self._up = PolyphaseResampler(RATE, rate)
            self._prefill = self._worst_shortfall()
        else:
            self._prefill = 0
        self.reset()

    def _worst_shortfall(self) -> int:
        """Zeros the output queue starts with so it never runs dry: the largest gap, over every input
        count, between samples received and samples back from down-convert-up (a periodic function)."""
        n = np.arange(0, 4 * (self._down.down * self._up.down + self.rate // 50) + 1)
        back = self._up.available(self._down.available(n))
        return int(np.max(n - back))

    @property
    def delay_samples(self) -> float:
        """Output delay in samples at `rate` (fractional where 16 kHz samples do not map to whole ones)."""
        return self._prefill + self.converter.delay_samples * self.rate / RATE

    @property
    def latency_s(self) -> float:
        """Total algorithmic delay: converter (hop + lookahead) plus resampling filters and queueing."""
        return self.delay_samples / self.rate

    def reset(self) -> None:
        self.converter.reset()
        if self._resampling:
            self._down.reset()
            self._up.reset()
        self._queue = np.zeros(self._prefill, dtype=np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Convert a chunk of any length at `rate`; returns exactly as many samples."""
        x = as_mono_float(samples).astype(np.float32)
        if not self._resampling:
            return self.converter.process(x)
        converted = self.converter.process(self._down.process(x).astype(np.float32))
        back = self._up.process(converted).astype(np.float32)
        self._queue = np.concatenate([self._queue, back])
        out, self._queue = self._queue[:len(x)], self._queue[len(x):]
        return out


def world_for_persona(persona, rate: int, models_dir=None) -> VoiceStream:
    """The registry's constructor (filters/registry.py): WORLD conversion toward the persona's profile."""
    from filters.voice.persona_voice import voice_profile

    return VoiceStream(voice_profile(persona), rate)
