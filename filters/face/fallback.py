"""What the far end sees while the operator's face is lost (turned away, covered, out of frame).

The one rule: the far end never sees the operator's own face. A short loss (a blink of the tracker, a
hand passing) is bridged by holding the last converted frame, which looks like a brief freeze; a longer
loss shows the persona's still portrait, which reads as "the picture paused" rather than a stranger
appearing. Before any face was ever converted there is nothing to hold, so the portrait shows.
"""

from __future__ import annotations

import cv2
import numpy as np

HOLD_S = 0.5


def cover_fit(image: np.ndarray, size: tuple[int, int],
              focus: tuple[float, float] | None = None) -> np.ndarray:
    """Scale `image` to fill `size` (h, w) with no borders, cropping the overflow around `focus` (x, y).

    Cropping around the face keeps it in view when the photo's shape differs from the frame's.
    """
    h, w = size
    ih, iw = image.shape[:2]
    scale = max(w / iw, h / ih)
    sw, sh = max(int(round(iw * scale)), w), max(int(round(ih * scale)), h)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (sw, sh), interpolation=interp)
    fx, fy = (iw / 2, ih / 2) if focus is None else focus
    x0 = int(np.clip(round(fx * scale - w / 2), 0, sw - w))
    y0 = int(np.clip(round(fy * scale - h / 2), 0, sh - h))
    return np.ascontiguousarray(scaled[y0 : y0 + h, x0 : x0 + w])


class LostFacePolicy:
    """Chooses the frame to show when no face was converted: the held last output, or the portrait.

    Times are the frames' capture timestamps (seconds), so a stalled or slow pipeline does not change
    how long a frame is held.
    """

    def __init__(self, portrait: np.ndarray, *, focus: tuple[float, float] | None = None,
                 hold_s: float = HOLD_S) -> None:
        if hold_s < 0:
            raise ValueError("hold_s must be >= 0")
        self._portrait = portrait
        self._focus = focus
        self.hold_s = hold_s
        self._fitted: dict[tuple[int, int], np.ndarray] = {}
        self._last: np.ndarray | None = None
        self._last_t: float | None = None

    def converted(self, image: np.ndarray, t_capture: float) -> None:
        """Remember a successfully converted output frame (kept by reference: do not modify it later)."""
        self._last = image
        self._last_t = t_capture

    def portrait(self, size: tuple[int, int]) -> np.ndarray:
        """The persona portrait fitted to `size` (h, w); a copy the caller may modify."""
        fitted = self._fitted.get(size)
        if fitted is None:
            fitted = cover_fit(self._portrait, size, self._focus)
            self._fitted = {size: fitted}  # one frame size at a time is the normal case
        return fitted.copy()

    def lost(self, size: tuple[int, int], t_capture: float) -> tuple[np.ndarray, str]:
        """Frame and its source ("held" or "portrait") for a frame of `size` (h, w) with no face."""
        if self._last is not None and self._last_t is not None and t_capture - self._last_t <= self.hold_s:
            held = self._last
            if held.shape[:2] != size:
                held = cv2.resize(held, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            else:
                held = held.copy()
            return held, "held"
        return self.portrait(size), "portrait"
