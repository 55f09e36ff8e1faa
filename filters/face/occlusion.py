"""Finding what is in front of the operator's face (a hand, a cup, a phone), so the swap leaves it there.

The mesh tracker keeps reporting a whole face behind an occluder, so a plain swap paints the persona's
skin over the operator's hand or cup: the object seems to pass behind her face, which no one misses.
Occluders are found by colour: inside the face, pixels whose chroma departs strongly from the
operator's skin are not skin. The skin model is the median and spread of Lab chroma (a, b) over the face
without eyes, brows and lips (robust to an occluder over less than half of it), kept as a running model
that learns only from frames where next to nothing is flagged: while a cup is raised the model must not
slowly take the cup for skin. Chroma rather than
brightness: shadows and the room's light change a face's lightness much more than its chroma.

Eyes, brows and lips are not skin either, so they are never flagged by themselves; an occluder that
covers them is recovered by closing the mask over them. Specks (nostrils, moles, glints) are dropped by
size. The found region is then grown past the face outline into the reshaping band by colour likeness
to the occluder, so a cup that reaches below the chin stays whole.

Limits: an occluder of skin colour (a bare hand of the operator's own skin tone) is not found; a beard
of a colour unlike the skin counts as an occluder (the operator's beard stays).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from filters.face.blend import blur_mask, face_width
from filters.face.landmarks import face_oval_indices, feature_indices

THRESHOLD = 4.5  # chroma distance from the skin model, in its robust standard deviations
MIN_SPREAD = 2.5  # Lab units: a floor for the spread (an evenly lit face would flag its own blush)
INSET = 0.06  # face widths: the outline's edge (hair, ears, background) is not judged
FEATURE_MARGIN = 0.03  # face widths around eyes, brows and lips that are not judged on their own
SPECK = 0.035  # face widths: flagged areas thinner than this are dropped (nostrils, glints, lashes)
CLOSE = 0.12  # face widths: holes this size inside an occluder (a covered lip, an eye) are filled
MIN_AREA = 0.02  # fraction of the face's area: smaller flagged regions are not an occluder
GROW_DISTANCE = 3.0  # occluder spreads, in Lab, within which band pixels join an occluder beside them
GROW_REACH = 0.4  # face widths: how far past the judged face an occluder may be grown
GROW_SKIN = 0.6  # and never over pixels this close to skin colour (in THRESHOLDs): the cheeks beside a cup
MODEL_RATE = 0.3  # how fast the skin model follows the face's colour (white balance drifts)
CLEAR_FRACTION = 0.03  # a frame with fewer flagged skin pixels than this teaches the skin model
FEATHER = 0.01  # face widths of soft edge on the final mask


@dataclass
class Occlusion:
    """What was found over the box: `mask` (float32 0..1, 1 on occluders) and `skin` (bool: pixels whose
    colour is the operator's skin and lie off the occluder, for colour statistics that it must not skew)."""

    mask: np.ndarray
    skin: np.ndarray


def _kernel(size: float) -> np.ndarray:
    """Round structuring element about `size` px across (odd, at least 3)."""
    k = max(int(round(size)) | 1, 3)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def _rect(size: float) -> np.ndarray:
    """Square structuring element: separable, so much cheaper for wide erosions and dilations."""
    k = max(int(round(size)) | 1, 3)
    return np.ones((k, k), np.uint8)


def _doubled(small: np.ndarray, full: tuple[int, int], interpolation: int) -> np.ndarray:
    """A half-resolution mask brought back to `full` (h, w): twice its size, and an odd side's last row
    or column a copy of the one before."""
    h, w = small.shape[:2]
    big = cv2.resize(small, (2 * w, 2 * h), interpolation=interpolation)
    return cv2.copyMakeBorder(big, 0, full[0] - 2 * h, 0, full[1] - 2 * w, cv2.BORDER_REPLICATE)


def _median_u8(values: np.ndarray) -> float:
    """np.median of small non-negative integers, by counting: a sort-free O(n), exact (a half-integer
    where the count is even), and the same value np.median gives."""
    n = len(values)
    below = np.cumsum(np.bincount(values))
    lo, hi = np.searchsorted(below, [(n - 1) // 2, n // 2], side="right")
    return (float(lo) + float(hi)) / 2


def _doubled_deviation(values: np.ndarray, centre: float) -> np.ndarray:
    """2 |values - centre| as integers, for a centre that is a whole or half integer (a median of integers)."""
    return np.abs(2 * values.astype(np.int32) - int(round(2 * centre)))


class OccluderDetector:
    """Per frame: a soft mask (0..1) of occluders in front of the operator's face."""

    def __init__(self) -> None:
        self._oval = np.array(face_oval_indices(), dtype=np.int32)
        # Eyes, brows and lips are not judged as skin (convex hulls: the lips' is their outer line's).
        self._features = [feature_indices(name) for name in ("left_eye", "right_eye", "left_eyebrow",
                                                              "right_eyebrow", "lips")]
        self._model: np.ndarray | None = None  # (a, b, spread a, spread b) of the operator's skin
        self._clear = True  # whether the last frame had (next to) no occluder: the model may learn from it

    def reset(self) -> None:
        """Forget the skin model (a new operator)."""
        self._model = None
        self._clear = True

    def __call__(self, image: np.ndarray, points: np.ndarray,
                 box: tuple[int, int, int, int]) -> Occlusion | None:
        """Occluders over `box` (x0, y0, x1, y1) of `image`, or None when there is none.

        `points` is the operator's mesh (468, 2) in frame pixels; `box` should hold the whole face.
        """
        x0, y0, x1, y1 = box
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        # At half resolution: an occluder is large, the mask ends soft, and it costs a quarter as much.
        # Exactly half (an odd side leaves its last row or column out here, and takes the one before's mask):
        # OpenCV's INTER_AREA then averages 2x2 boxes, where a ratio a hair off 2 ran its general
        # resampler at five times the cost.
        full = (y1 - y0, x1 - x0)
        shape = (full[0] // 2, full[1] // 2)
        even = image[y0 : y0 + 2 * shape[0], x0 : x0 + 2 * shape[1]]
        small = cv2.resize(even, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        pts = (np.asarray(points, np.float32) - (x0, y0)) * np.float32(0.5)
        outline = pts[self._oval]
        size = face_width(outline)

        face = np.zeros(shape, np.uint8)
        cv2.fillPoly(face, [np.round(outline).astype(np.int32)], 255)
        inner = cv2.erode(face, _rect(2 * INSET * size))
        features = np.zeros(shape, np.uint8)
        for loop in self._features:
            cv2.fillConvexPoly(features, cv2.convexHull(np.round(pts[loop]).astype(np.int32)), 255)
        features = cv2.dilate(features, _rect(2 * FEATURE_MARGIN * size))
        judged = (inner > 0) & (features == 0)
        if judged.sum() < 50:
            return None

        lab = cv2.cvtColor(small, cv2.COLOR_BGR2Lab)
        ab = lab[..., 1:].astype(np.float32)
        a0, b0, sa, sb = self._skin_model(lab[..., 1][judged], lab[..., 2][judged])
        dist = np.sqrt(((ab[..., 0] - a0) / sa) ** 2 + ((ab[..., 1] - b0) / sb) ** 2)
        flagged = ((dist > THRESHOLD) & judged).astype(np.uint8) * 255
        # The model learns only from frames with next to nothing in front of the face.
        self._clear = cv2.countNonZero(flagged) <= CLEAR_FRACTION * int(judged.sum())
        flagged = cv2.morphologyEx(flagged, cv2.MORPH_OPEN, _kernel(SPECK * size))
        if not flagged.any():
            return None
        flagged = cv2.morphologyEx(flagged, cv2.MORPH_CLOSE, _kernel(CLOSE * size))
        flagged &= inner
        count, labels, stats, _ = cv2.connectedComponentsWithStats(flagged, connectivity=8)
        min_area = MIN_AREA * float(cv2.countNonZero(face))
        keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
        if not keep:
            return None
        occluder = np.isin(labels, keep)
        occluder = self._grow(lab, occluder, ~judged & (dist > GROW_SKIN * THRESHOLD), size)
        mask = cv2.dilate(occluder.astype(np.uint8) * 255, _kernel(3))
        mask = _doubled(mask, full, cv2.INTER_LINEAR)
        soft = blur_mask(mask, max(2 * FEATHER * size, 0.8)).astype(np.float32) * np.float32(1 / 255)
        skin = _doubled((dist <= THRESHOLD).astype(np.uint8), full, cv2.INTER_NEAREST) > 0
        return Occlusion(soft, skin & (soft == 0))

    def _skin_model(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The skin chroma model (a, b, spread a, spread b) from the judged pixels' Lab chroma `a` and `b`
        (uint8): learnt from the first frame (median and MAD hold while an occluder covers less than half
        the face), then followed only through clear frames."""
        if self._model is not None and not self._clear:
            return self._model
        med = np.array([_median_u8(a), _median_u8(b)], np.float32)
        mad = np.array([_median_u8(_doubled_deviation(a, med[0])), _median_u8(_doubled_deviation(b, med[1]))],
                       np.float32) * np.float32(0.5)
        spread = np.maximum(1.4826 * mad, MIN_SPREAD)
        current = np.concatenate([med, spread])
        self._model = current if self._model is None else self._model + MODEL_RATE * (current - self._model)
        return self._model

    @staticmethod
    def _grow(lab: np.ndarray, occluder: np.ndarray, open_: np.ndarray, size: float) -> np.ndarray:
        """`occluder` plus the `open` pixels (not judged by skin colour: the outline's band, eyes, brows, lips;
        and not skin-coloured) that look like it, touch it and lie near it: a cup's rim over the lips, its
        foot below the chin. Not further: a background of the cup's colour must not join it wholesale."""
        values = lab[occluder].astype(np.float32)
        mean = values.mean(axis=0)
        spread = np.maximum(values.std(axis=0), MIN_SPREAD * 2)
        dist = np.sqrt((((lab.astype(np.float32) - mean) / spread) ** 2).sum(axis=2))
        k = GROW_REACH * size
        near = cv2.dilate(occluder.astype(np.uint8), _rect(k)) > 0
        candidate = occluder | ((dist < GROW_DISTANCE) & open_ & near)
        count, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
        touching = np.unique(labels[occluder])
        return np.isin(labels, touching[touching > 0])
