"""Offline conversion through a streaming converter: the whole recording, time-aligned."""

from __future__ import annotations

from typing import Callable

import numpy as np


def convert_offline(process: Callable[[np.ndarray], np.ndarray], delay: int, samples: np.ndarray) -> np.ndarray:
    """A whole recording through a streaming converter, its constant `delay` (samples) removed.

    Feeds the samples and then `delay` zeros, so the output is as long as the input and time-aligned with
    it: what a call would have sent, without the wait. Offline rendering and the converters' own
    `convert_whole` all go through here.
    """
    n = len(samples)
    out = np.concatenate([process(np.asarray(samples, dtype=np.float32)), process(np.zeros(delay, np.float32))])
    return out[delay:delay + n]
