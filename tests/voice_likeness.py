"""Did a voice come out converted? Its pitch, judged against the persona's and the operator's own.

A loudness check passes for the operator's unchanged voice; pitch does not. The demo operator (espeak-ng
`en+m3`, about 100 Hz) and persona (`en+f3`, about 200 Hz) are an octave apart, so a converted voice sits
measurably closer to the persona in log pitch, and the untouched input sits on the operator's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.audio_io import resample
from filters.voice.profile import track_pitch

PITCH_RATE = 16000  # what track_pitch analyses
HOP = PITCH_RATE // 100  # one estimate every 10 ms


def median_pitch(samples: np.ndarray, rate: int) -> float:
    """Median F0 (Hz) over the voiced 10 ms frames of mono `samples`; nan when nothing is voiced."""
    x = np.asarray(samples, np.float32)
    if rate != PITCH_RATE:
        x = resample(x, rate, PITCH_RATE)
    centres = np.arange(HOP * 4, len(x) - HOP * 4, HOP)
    if len(centres) == 0:
        return math.nan
    f0 = track_pitch(x, centres)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if len(voiced) >= 20 else math.nan  # 0.2 s of voicing at least


@dataclass(frozen=True)
class PitchVerdict:
    heard: float  # Hz, median of the voice under test
    persona: float
    operator: float

    @property
    def toward_persona(self) -> float:
        """Share of the operator-to-persona distance in log pitch the voice covered (0: none, 1: all of it)."""
        span = math.log(self.persona / self.operator)
        return math.log(self.heard / self.operator) / span

    def __str__(self) -> str:
        return (f"median pitch {self.heard:.0f} Hz (operator {self.operator:.0f}, persona {self.persona:.0f}; "
                f"{self.toward_persona:.0%} of the way)")


def pitch_verdict(heard: np.ndarray, heard_rate: int, persona: np.ndarray, persona_rate: int,
                  operator: np.ndarray, operator_rate: int) -> PitchVerdict:
    return PitchVerdict(median_pitch(heard, heard_rate), median_pitch(persona, persona_rate),
                        median_pitch(operator, operator_rate))
