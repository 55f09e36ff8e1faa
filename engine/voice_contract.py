"""What every voice backend is to the rest of evercall: a streaming filter with a constant, known delay.

The same protocol serves at every level: a 16 kHz converter (WORLD, RVC) and the call-rate stream that
wraps it both return exactly as many samples as they are given, the converted input `delay_samples`
late, so the pipeline can hold video back by exactly `latency_s` and lips stay on the voice.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VoiceFilter(Protocol):
    """A streaming voice conversion: same number of samples out as in, output delayed by a constant."""

    @property
    def delay_samples(self) -> float:
        """Output sample n is the conversion of input sample n - delay_samples (at the filter's own rate)."""
        ...

    @property
    def latency_s(self) -> float:
        """The same delay in seconds: what video waits for."""
        ...

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Convert a chunk of any length; returns exactly as many float32 samples."""
        ...

    def reset(self) -> None:
        """Forget the stream so far (a new call or a new file), keeping what was learnt of the persona."""
        ...


class PassthroughVoice:
    """The operator's audio unchanged and undelayed: the relay's own cost in benchmarks and tests."""

    delay_samples = 0
    latency_s = 0.0

    def process(self, samples: np.ndarray) -> np.ndarray:
        return np.asarray(samples, dtype=np.float32)

    def reset(self) -> None:
        pass
