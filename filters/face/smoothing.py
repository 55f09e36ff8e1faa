"""Landmark smoothing that removes tracker jitter on a still head without lagging behind a moving one.

A tracking mesher's points tremble by a pixel or so from frame to frame even when the head is still
(sensor noise, compression): the warped persona face then shimmers, which reads as fake at once. A fixed
low-pass filter would calm it but trail behind every nod. The One Euro filter (Casiez et al., CHI 2012)
adapts its cut-off to the speed: slow movement -> low cut-off (strong smoothing), fast movement -> high
cut-off (little lag). Here the speed is per landmark (the norm of its 2-D velocity) and in face widths per
second, so the same settings hold whatever the face's size in the frame; and speeds up to the tracker's
own jitter level do not raise the cut-off at all, so jitter cannot open the filter to itself while a
blink or a nod, well above that level, still opens it at once. (Averaging each point's velocity with its
mesh neighbours' was tried as well, to tell random jitter from coherent motion: it did not help, because
MediaPipe's tracking jitter is itself coherent, the whole mesh shifting with the tracker's crop.)
"""

from __future__ import annotations

import math

import numpy as np

# Cut-off at rest (Hz), how fast it rises with speed (Hz per face width per second), the cut-off of the
# speed estimate, and the speed below which motion counts as jitter (face widths per second; about a
# third of a pixel a frame for a 150 px face at 30 fps) and does not raise the cut-off at all.
# Tuned on MediaPipe's tracking mesh of a still head in 640x480 frames at 30 fps, with and without
# sensor noise: its jitter (0.27 px RMS, even on identical frames: the tracker's crop wanders) drops to
# 0.09 px; a blink reaches 98 % of the lid's travel on its first frame; slow head motion is followed
# within about half a pixel. Plain One Euro (no jitter speed) had to give up one for the other: at
# beta 12, 0.09 px but 61 % of a blink on its first frame; at beta 100, 95 % but 0.17 px.
MIN_CUTOFF = 0.5
BETA = 40.0
D_CUTOFF = 8.0
JITTER_SPEED = 0.1
# A gap longer than this between frames (a lost face, a stall) restarts the filter instead of smoothing
# across it: the face may come back elsewhere.
MAX_GAP_S = 0.25


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with this cut-off (Hz) at time step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class LandmarkSmoother:
    """One Euro filter over an (N, 2) array of points, with per-point adaptive cut-off."""

    def __init__(self, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = D_CUTOFF,
                 jitter_speed: float = JITTER_SPEED) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.jitter_speed = jitter_speed
        self._x: np.ndarray | None = None  # last filtered points
        self._dx: np.ndarray | None = None  # last filtered speed (face widths / s) per point
        self._t: float | None = None

    def reset(self) -> None:
        """Forget the past (the face was lost): the next points pass through unchanged."""
        self._x = self._dx = self._t = None

    def __call__(self, points: np.ndarray, t: float, scale: float) -> np.ndarray:
        """Filtered copy of `points` (N, 2) seen at time `t` (s); `scale` is the face size in pixels."""
        x = np.asarray(points, np.float64)
        if self._x is None or self._t is None or self._x.shape != x.shape or not (0.0 < t - self._t <= MAX_GAP_S):
            self._x, self._dx, self._t = x.copy(), np.zeros(len(x)), t
            return x.astype(np.float32)
        dt = t - self._t
        speed = np.linalg.norm(x - self._x, axis=1) / (dt * max(scale, 1.0))
        self._dx += _alpha(self.d_cutoff, dt) * (speed - self._dx)
        a = _alpha(self.min_cutoff + self.beta * np.maximum(self._dx - self.jitter_speed, 0.0), dt)
        self._x += a[:, None] * (x - self._x)
        self._t = t
        return self._x.astype(np.float32)

