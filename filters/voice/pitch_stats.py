"""The operator's log-F0 mean and spread, learnt online while they speak.

Both voice converters map the operator's pitch onto the persona's range, so both need these running
figures: they start from a prior (a mid-range voice, worth a second of speech), follow the operator with
exponential forgetting, clip octave errors to three spreads, and can start from a measured warm-up.
"""

from __future__ import annotations

import math

import numpy as np

PRIOR_LOG_F0 = math.log(150.0)  # between typical male (~110 Hz) and female (~200 Hz) speaking pitch
PRIOR_LOG_F0_STD = 0.12  # about 2 semitones, a common speaking spread


class RunningLogF0:
    """Weighted running sums of log-F0 over voiced frames; frame counts are in the caller's frame unit."""

    def __init__(self, prior_frames: float, memory_frames: float) -> None:
        self.prior_frames = prior_frames
        self.memory_frames = memory_frames
        self.decay = math.exp(-1.0 / memory_frames)
        self.reset()

    def reset(self) -> None:
        """Back to the prior."""
        self.w = self.prior_frames
        self.s1 = self.w * PRIOR_LOG_F0
        self.s2 = self.w * (PRIOR_LOG_F0 ** 2 + PRIOR_LOG_F0_STD ** 2)

    @property
    def mean(self) -> float:
        return self.s1 / self.w

    @property
    def std(self) -> float:
        return math.sqrt(max(self.s2 / self.w - self.mean ** 2, 1e-4))

    def learn(self, log_f0: np.ndarray) -> None:
        """Fold in voiced frames (each once); values beyond three spreads (octave errors) are clipped."""
        for lf in log_f0:
            lf = min(max(float(lf), self.mean - 3 * self.std), self.mean + 3 * self.std)
            self.w = self.w * self.decay + 1.0
            self.s1 = self.s1 * self.decay + lf
            self.s2 = self.s2 * self.decay + lf * lf

    def assume(self, log_f0_mean: float, log_f0_std: float, frames: float) -> None:
        """Start from measured figures, weighted as the voiced frames they came from (up to the memory)."""
        self.w = min(frames, self.memory_frames)
        self.s1 = self.w * log_f0_mean
        self.s2 = self.w * (log_f0_mean ** 2 + log_f0_std ** 2)


def spread_ratio(persona_std: float, operator_std: float) -> float:
    """How much the operator's pitch movements are scaled to span the persona's range (clipped to 0.5-2:
    a monotone or a wildly varying stretch of speech must not flatten or exaggerate them past that)."""
    return min(max(persona_std / operator_std, 0.5), 2.0)


def toward_persona(log_f0: np.ndarray, operator_mean: float, persona_mean: float, ratio: float) -> np.ndarray:
    """Operator log-F0 values moved onto the persona's: same distance from the mean, scaled by `ratio`."""
    return persona_mean + (log_f0 - operator_mean) * ratio
