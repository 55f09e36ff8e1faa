"""Framing for the far end's screen: a crop around the persona's face in the shape of her screen.

Why. The relay's picture is 4:3 (or whatever the operator's camera gives). A phone held upright is about
9:19.5, so a browser that fits the whole picture shows it letterboxed across the middle third with the face
a tenth of the screen's height. Cropping here, on the relay, rather than on the page has two advantages: the
encoder spends the path's bitrate only on pixels she will see (what matters on 4G at a few hundred kbit/s),
and the page stays a plain full-screen video element with `object-fit: cover`, which every browser does well.

How. The page posts its viewport (`/join/{token}/viewport`, again on rotation). `FaceFramer.frame()` finds
the face every few frames with MediaPipe's short-range face detector (weights inside the wheel, about 2 ms
on a small copy of the picture), and moves a crop window of the viewport's aspect towards "face at
`face_share` of the height, eyes a little above the middle". The window follows slowly (time constant
`follow_s`) and ignores small moves (a dead band), so the picture glides instead of jumping; with no face
for a while it widens slowly back to the whole picture. The crop and the scaling to the size sent are one
sub-pixel affine warp (no rounding jitter). The size sent follows the encoder's bitrate (`size_for`), so a
thin path gets fewer pixels rather than a frozen picture.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

MIN_ASPECT, MAX_ASPECT = 0.4, 2.5  # narrower or wider than any real screen: clamp (a bad report must not crash)
LONG_SIDES = (640, 480, 360, 240)  # the picture's long side, largest first
DETECT_WIDTH = 320  # the detector sees a copy this wide: plenty for a face that fills a video call


@dataclass(frozen=True)
class Window:
    """A crop window in source pixels: centre and height (its width is height x aspect)."""

    cx: float
    cy: float
    height: float


def clamp_aspect(width: float, height: float) -> float:
    """The viewport's width/height, clamped to what a real screen can be."""
    if not (width > 0 and height > 0) or not math.isfinite(width / height):
        raise ValueError("a viewport needs a positive width and height")
    return min(MAX_ASPECT, max(MIN_ASPECT, width / height))


def size_for(aspect: float, bitrate_bps: float | None, fps: float = 30.0) -> tuple[int, int]:
    """The picture size to send for a screen of `aspect` at the encoder's bitrate.

    About 0.05 bit per pixel per frame keeps VP8 clear at video-call content; the long side is one of
    LONG_SIDES (a phone shows it full screen; more would only cost bitrate the path may not have).
    Both sides are even (I420).
    """
    bits_per_frame = (bitrate_bps or 500_000) / max(fps, 1.0)
    pixels = bits_per_frame / 0.05
    fits = math.sqrt(pixels * max(aspect, 1 / aspect))
    # A few steps, not a continuum: every new size restarts the encoder (a keyframe).
    long_side = next((s for s in LONG_SIDES if s <= fits), LONG_SIDES[-1])
    if aspect >= 1:
        w, h = long_side, long_side / aspect
    else:
        w, h = long_side * aspect, long_side
    return int(round(w / 2)) * 2, int(round(h / 2)) * 2


MAX_FILL = 0.10  # the most of the screen's height (or width) a soft fill may take when a face is too big


def _placed(cx: float, cy: float, height: float, aspect: float, image_w: int, image_h: int) -> Window:
    """The window moved back inside the picture; centred on an axis where it is larger than the picture."""
    width = height * aspect
    cx = image_w / 2 if width >= image_w else min(max(cx, width / 2), image_w - width / 2)
    cy = image_h / 2 if height >= image_h else min(max(cy, height / 2), image_h - height / 2)
    return Window(cx, cy, height)


def largest_height(aspect: float, image_w: int, image_h: int, fill: float = MAX_FILL) -> float:
    """The tallest window of `aspect`: the picture's own limit, stretched so a fill takes at most `fill`."""
    return min(image_h, image_w / aspect) / (1 - fill)


def fit_window(face_cx: float, face_cy: float, face_h: float, aspect: float, image_w: int, image_h: int,
               face_share: float, width_share: float = 0.75) -> Window:
    """Where the crop should be for a face box centred at (face_cx, face_cy), `face_h` pixels tall.

    The window is as large as gives the face `face_share` of its height (or, on a narrow screen, `width_share`
    of its width; the face box is about as wide as it is tall). It stays inside the picture, except where
    the face itself is too big for the screen's shape (a close-up in a 4:3 picture on an upright phone):
    then it may reach past two edges by up to MAX_FILL of its size in all, which `crop` fills softly,
    rather than cut the face's sides off.
    """
    # On a narrow (upright) screen the face's width binds first: it may take `width_share` of the width.
    wanted = max(face_h / face_share, face_h / (width_share * aspect))
    height = min(wanted, largest_height(aspect, image_w, image_h))  # past the picture only by the fill
    return _placed(face_cx, face_cy + 0.06 * height, height, aspect, image_w, image_h)  # eyes above the middle


def whole_window(aspect: float, image_w: int, image_h: int) -> Window:
    """The largest centred window of `aspect` inside the picture (what is shown when no face is found)."""
    height = min(image_h, image_w / aspect)
    return Window(image_w / 2, image_h / 2, height)


def crop(image: np.ndarray, window: Window, aspect: float, size: tuple[int, int]) -> np.ndarray:
    """The window, resampled to `size` (w, h) in one sub-pixel warp; any part past the picture's edges is
    a blurred, dimmed mirror of what is next to it (a soft fill, not a black bar)."""
    out_w, out_h = size
    scale = out_h / window.height
    m = np.float32([[scale, 0, out_w / 2 - window.cx * scale], [0, scale, out_h / 2 - window.cy * scale]])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REFLECT_101)
    h, w = image.shape[:2]
    x0, y0 = int(np.ceil(m[0, 2])), int(np.ceil(m[1, 2]))  # where the picture's edges landed
    x1, y1 = int(np.floor(w * scale + m[0, 2])), int(np.floor(h * scale + m[1, 2]))
    top, bottom = min(max(y0, 0), out_h), max(min(y1, out_h), max(y0, 0))
    left, right = min(max(x0, 0), out_w), max(min(x1, out_w), max(x0, 0))
    # Four bands that do not overlap (top and bottom take the corners), so each fill pixel is blurred
    # and dimmed once: overlapping bands darkened the corners twice.
    for part in (out[:top], out[bottom:], out[top:bottom, :left], out[top:bottom, right:]):
        if part.size:
            part[:] = (cv2.GaussianBlur(part, (0, 0), 6) * 0.6).astype(np.uint8)
    return out


class FaceDetector:
    """MediaPipe's short-range face detector on a small copy: (cx, cy, height) of the best face, or None."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._det = mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                              min_detection_confidence=min_confidence)

    def __call__(self, image_bgr: np.ndarray) -> tuple[float, float, float] | None:
        h, w = image_bgr.shape[:2]
        scale = min(1.0, DETECT_WIDTH / w)
        small = cv2.resize(image_bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else image_bgr
        result = self._det.process(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        if not result.detections:
            return None
        best = max(result.detections, key=lambda d: d.score[0])
        b = best.location_data.relative_bounding_box
        return (b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h, b.height * h

    def close(self) -> None:
        self._det.close()


class FaceFramer:
    """Crops each outgoing picture around the face, in the far end's shape, with slow smooth moves.

    Thread-safe where it needs to be: `set_viewport` comes from the event loop, `frame` from a worker.
    """

    def __init__(self, face_share: float = 0.45, follow_s: float = 0.8, detect_every: int = 3,
                 dead_band: float = 0.04, lost_after_s: float = 3.0, detector=None) -> None:
        self.face_share = face_share
        self.follow_s = follow_s  # time constant of the glide towards the target window
        self.detect_every = detect_every
        self.dead_band = dead_band  # target moves smaller than this share of the window are ignored
        self.lost_after_s = lost_after_s
        self._detector = detector
        self._lock = threading.Lock()
        self._aspect: float | None = None
        self._window: Window | None = None
        self._target: Window | None = None
        self._count = 0
        self._last_t: float | None = None
        self._face_seen_t: float | None = None
        self.last_face: tuple[float, float, float] | None = None

    @property
    def aspect(self) -> float | None:
        return self._aspect

    def set_viewport(self, width: float, height: float) -> float:
        """The far end's screen changed shape (or told us its shape the first time). Returns the aspect."""
        aspect = clamp_aspect(width, height)
        with self._lock:
            if self._aspect is not None and abs(aspect - self._aspect) > 1e-3:
                # A rotation: jump to the new shape (a glide from upright to landscape would look broken).
                self._window = None
            self._aspect = aspect
        return aspect

    def _detect(self, image: np.ndarray) -> tuple[float, float, float] | None:
        if self._detector is None:
            self._detector = FaceDetector()
        return self._detector(image)

    def frame(self, image: np.ndarray, t: float, size: tuple[int, int] | None = None,
              bitrate_bps: float | None = None) -> np.ndarray:
        """The picture to send for `image` captured at `t` (seconds): framed, or as it is before a viewport."""
        with self._lock:
            aspect = self._aspect
            window = self._window
        if aspect is None:
            return image
        h, w = image.shape[:2]
        if self._count % self.detect_every == 0:
            face = self._detect(image)
            if face is not None:
                self.last_face = face
                self._face_seen_t = t
                target = fit_window(*face, aspect, w, h, self.face_share)
                if self._target is None or window is None or self._moved_enough(self._target, target):
                    self._target = target
            elif self._face_seen_t is None or t - self._face_seen_t > self.lost_after_s:
                self._target = whole_window(aspect, w, h)
        self._count += 1
        target = self._target or whole_window(aspect, w, h)
        if window is None:
            window = target
        else:
            dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), 0.5)
            k = 1.0 - math.exp(-dt / self.follow_s)
            window = Window(window.cx + k * (target.cx - window.cx), window.cy + k * (target.cy - window.cy),
                            window.height + k * (target.height - window.height))
            # Still placed as fit_window places it after the glide (a shrinking window may leave an edge behind).
            window = _placed(window.cx, window.cy, min(window.height, largest_height(aspect, w, h)), aspect, w, h)
        self._last_t = t
        with self._lock:
            if self._aspect == aspect:
                self._window = window
        return crop(image, window, aspect, size or size_for(aspect, bitrate_bps))

    def _moved_enough(self, current: Window, new: Window) -> bool:
        scale = current.height
        return (abs(new.cx - current.cx) > self.dead_band * scale or abs(new.cy - current.cy) > self.dead_band * scale
                or abs(new.height - current.height) > 2 * self.dead_band * scale)

    def close(self) -> None:
        if self._detector is not None and hasattr(self._detector, "close"):
            self._detector.close()
            self._detector = None
