"""A mouth interior for a persona photo whose lips were closed when it was taken (portrait mode).

Warping a closed mouth open only stretches the thin line between the lips into a smear of lip colour:
nobody's mouth looks like that. The opening is instead filled with the operator's own mouth interior
(teeth, tongue, the dark of the throat), taken from inside their inner-lip line, warped into the persona's
opened inner-lip polygon and recoloured by how the persona's skin differs from the operator's in light and
white balance. The operator's mouth is open exactly when the persona's is (the persona's opening is the
operator's, transferred), so there is always an interior to take.
"""

from __future__ import annotations

import cv2
import numpy as np

from filters.face.blend import composite
from filters.face.warp import warp_face

# Small skin samples (cheeks, forehead, nose bridge) that compare the operator's light with the photo's.
SKIN_SAMPLE_POINTS = (50, 280, 151, 6)
SKIN_SAMPLE_FRACTION = 0.06  # half-size of each sample square, in face widths
SHRINK = 0.9  # the operator's polygon is taken this much inside their inner lips: no lip edge is copied
MIN_AREA_PX = 6.0  # a smaller opening is left to the warp (a lip line, not an opening)
MAX_GAIN = 1.6  # brightness ratio limits: a face lit from behind would otherwise blow the teeth out
CHROMA_SHARE = 0.5  # part of the skin-tone difference applied to the interior (teeth are not skin)


def skin_lab(image: np.ndarray, points: np.ndarray, face_size: float) -> np.ndarray:
    """Mean Lab (3,) of small skin squares around the cheek, forehead and nose-bridge points."""
    h, w = image.shape[:2]
    r = max(int(round(face_size * SKIN_SAMPLE_FRACTION)), 2)
    means = []
    for i in SKIN_SAMPLE_POINTS:
        x, y = np.round(points[i]).astype(int)
        x0, y0, x1, y1 = max(x - r, 0), max(y - r, 0), min(x + r + 1, w), min(y + r + 1, h)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            lab = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2Lab)
            means.append(lab.reshape(-1, 3).mean(axis=0))
    return np.mean(means, axis=0) if means else np.array([128.0, 128.0, 128.0])


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def paint_interior(out: np.ndarray, operator_image: np.ndarray, operator_lips: np.ndarray,
                   target_lips: np.ndarray, operator_skin: np.ndarray, persona_skin: np.ndarray,
                   strength: float = 1.0) -> bool:
    """Fill the persona's inner-lip polygon `target_lips` in `out` (in place) with the operator's interior.

    `operator_lips` is the operator's inner-lip loop in `operator_image`, in the same order; the skin Lab
    means say how to recolour it into the persona photo's light. `strength` (0..1) fades the interior in
    as the mouth starts to open, so a parting of the lips does not flicker between lip and teeth colour.
    Returns whether anything was painted.
    """
    target = np.asarray(target_lips, np.float32)
    source = np.asarray(operator_lips, np.float32)
    if polygon_area(target) < MIN_AREA_PX or polygon_area(source) < 1.0:
        return False
    n = len(target)
    centre_t, centre_s = target.mean(axis=0), source.mean(axis=0)
    dst = np.vstack([target, centre_t[None]])
    src = np.vstack([centre_s + (source - centre_s) * SHRINK, centre_s[None]])
    fan = np.array([(n, i, (i + 1) % n) for i in range(n)], dtype=np.int32)
    patch, _, box = warp_face(operator_image, src, dst, fan, out.shape[:2])
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False

    # Recolour: brightness by ratio, white balance by a share of the chroma difference.
    gain = float(np.clip(persona_skin[0] / max(operator_skin[0], 1.0), 1.0 / MAX_GAIN, MAX_GAIN))
    shift = CHROMA_SHARE * (persona_skin[1:] - operator_skin[1:])
    matrix = np.array([[gain, 0, 0, 0], [0, 1, 0, shift[0]], [0, 0, 1, shift[1]]], np.float32)
    lab = cv2.transform(cv2.cvtColor(patch, cv2.COLOR_BGR2Lab), matrix)
    patch = cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)

    # Anti-aliased polygon with a soft inner edge: lips overlap the interior, they do not meet it at a seam.
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((target - (x0, y0)) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.GaussianBlur(mask, (3, 3), 0.8).astype(np.float32) * np.float32(min(max(strength, 0.0), 1.0) / 255)
    composite(out, patch, alpha, (x0, y0, x1, y1))
    return True
