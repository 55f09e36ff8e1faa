"""Media units that travel through the engine, each stamped with its capture time.

The capture time is `time.monotonic()` seconds at the moment the sample or frame left the source. Every
stage keeps it, so latency is measurable at any point as `now - t_capture`, and video and audio can be
aligned by it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np


def now() -> float:
    """The engine's one clock: monotonic seconds."""
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """A BGR uint8 image (H x W x 3) with its capture time and sequence number."""

    image: np.ndarray
    t_capture: float
    seq: int

    def with_image(self, image: np.ndarray) -> "VideoFrame":
        """Same timing, new pixels: what a filter returns."""
        return replace(self, image=image)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1]; `t_capture` is the capture time of the first sample."""

    samples: np.ndarray
    sample_rate: int
    t_capture: float
    seq: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def with_samples(self, samples: np.ndarray) -> "AudioChunk":
        return replace(self, samples=samples)
