"""What the far end sees while the operator's face is lost (turned away, covered, out of frame).

The one rule: the far end never sees the operator's own face. A short loss (a blink of the tracker, a
hand passing) is bridged by holding the last converted frame, which looks like a brief freeze; a longer
loss shows the persona's still portrait, which reads as "the picture paused" rather than a stranger
appearing. Before any face was ever converted there is nothing to hold, so the portrait shows.

With `fade_s` > 0 the change from the held frame to the portrait, and back from the portrait to live
frames when the face is found again, is a short crossfade: a hard cut between two different pictures of
the persona is more jarring than the loss itself. Both ends of every fade are persona pictures (a
converted frame or the portrait), so a fade never shows the operator's own face either.
"""

from __future__ import annotations

import cv2
import numpy as np

HOLD_S = 0.5
FADE_S = 0.3  # crossfade length the embedded filters use; the policy's own default (0) cuts


def cover_fit_transform(image_size: tuple[int, int], size: tuple[int, int],
                        focus: tuple[float, float] | None = None) -> tuple[float, int, int]:
    """(scale, x0, y0) of `cover_fit`: photo point p lands at (p + 0.5) * scale - 0.5 - (x0, y0) in the fit."""
    h, w = size
    ih, iw = image_size
    scale = max(w / iw, h / ih)
    sw, sh = max(int(round(iw * scale)), w), max(int(round(ih * scale)), h)
    fx, fy = (iw / 2, ih / 2) if focus is None else focus
    x0 = int(np.clip(round(fx * scale - w / 2), 0, sw - w))
    y0 = int(np.clip(round(fy * scale - h / 2), 0, sh - h))
    return scale, x0, y0


def cover_fit(image: np.ndarray, size: tuple[int, int],
              focus: tuple[float, float] | None = None) -> np.ndarray:
    """Scale `image` to fill `size` (h, w) with no borders, cropping the overflow around `focus` (x, y).

    Cropping around the face keeps it in view when the photo's shape differs from the frame's.
    """
    h, w = size
    ih, iw = image.shape[:2]
    scale, x0, y0 = cover_fit_transform((ih, iw), size, focus)
    sw, sh = max(int(round(iw * scale)), w), max(int(round(ih * scale)), h)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (sw, sh), interpolation=interp)
    return np.ascontiguousarray(scaled[y0 : y0 + h, x0 : x0 + w])


class LostFacePolicy:
    """Chooses the frame to show when no face was converted: the held last output, or the portrait.

    Times are the frames' capture timestamps (seconds), so a stalled or slow pipeline does not change
    how long a frame is held.
    """

    def __init__(self, portrait: np.ndarray, *, focus: tuple[float, float] | None = None,
                 hold_s: float = HOLD_S, fade_s: float = 0.0) -> None:
        if hold_s < 0:
            raise ValueError("hold_s must be >= 0")
        if fade_s < 0:
            raise ValueError("fade_s must be >= 0")
        self._portrait = portrait
        self._focus = focus
        self.hold_s = hold_s
        self.fade_s = fade_s
        self._fitted: dict[tuple[int, int], np.ndarray] = {}
        self._last: np.ndarray | None = None  # the last frame shown while the face was found
        self._last_t: float | None = None
        self._last_weight = 0.0  # how much portrait that frame holds (it may be mid-fade)
        # Weight of the portrait in the last frame shown of any kind (0 live or held, 1 the portrait).
        self._weight = 0.0
        self._weight_t: float | None = None

    @property
    def portrait_weight(self) -> float:
        """How much of the portrait the last frame shown held (0..1): above 0 after a loss past the hold."""
        return self._weight

    def converted(self, image: np.ndarray, t_capture: float) -> np.ndarray:
        """Remember a converted output frame (kept by reference: do not modify it later) and return the
        frame to show: `image` itself, unless a fade back from the portrait is under way."""
        w = 0.0
        if self._weight > 0.0 and self.fade_s > 0 and self._weight_t is not None:
            w = float(np.clip(self._weight - (t_capture - self._weight_t) / self.fade_s, 0.0, 1.0))
        shown = self._mix(image, w) if w > 0.0 else image
        self._weight, self._weight_t = w, t_capture
        self._last, self._last_t, self._last_weight = shown, t_capture, w
        return shown

    def _mix(self, image: np.ndarray, portrait_weight: float) -> np.ndarray:
        """`image` crossfaded toward the portrait of the same size."""
        size = image.shape[:2]
        fitted = self._fitted.get(size)
        if fitted is None:
            self.portrait(size)
            fitted = self._fitted[size]
        return cv2.addWeighted(fitted, portrait_weight, image, 1.0 - portrait_weight, 0.0)

    def portrait(self, size: tuple[int, int]) -> np.ndarray:
        """The persona portrait fitted to `size` (h, w); a copy the caller may modify."""
        fitted = self._fitted.get(size)
        if fitted is None:
            fitted = cover_fit(self._portrait, size, self._focus)
            self._fitted = {size: fitted}  # one frame size at a time is the normal case
        return fitted.copy()

    def lost(self, size: tuple[int, int], t_capture: float) -> tuple[np.ndarray, str]:
        """Frame and its source ("held" or "portrait") for a frame of `size` (h, w) with no face.

        Past the hold, and while a fade runs, the source is "portrait": the picture is on its way there.
        """
        self._weight_t = t_capture
        if self._last is None or self._last_t is None:
            self._weight = 1.0
            return self.portrait(size), "portrait"
        held = self._last
        if held.shape[:2] != size:
            held = cv2.resize(held, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        since = t_capture - self._last_t
        if since <= self.hold_s:
            self._weight = self._last_weight
            return held.copy(), "held"
        fade = min((since - self.hold_s) / self.fade_s, 1.0) if self.fade_s > 0 else 1.0
        # The held frame may itself hold some portrait already (the face was lost during a fade back).
        self._weight = self._last_weight + (1.0 - self._last_weight) * fade
        if fade >= 1.0:
            return self.portrait(size), "portrait"
        return self._mix(held, fade), "portrait"
