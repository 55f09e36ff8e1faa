"""Feathered face mask and alpha compositing of the warped persona face into the operator's frame.

A hard mask edge shows as a seam the moment lighting or skin tone differs even slightly; a soft edge
whose width follows the face size hides it at any distance from the camera. The mask is built only over
the face box, so it costs well under a millisecond.
"""

from __future__ import annotations

import cv2
import numpy as np

# Fractions of the face width (the distance across the face outline).
ERODE_FRACTION = 0.02  # pull the edge inside the outline, away from hair, ears and background
FEATHER_FRACTION = 0.12  # width of the soft edge, from fully operator to fully persona
MOUTH_FEATHER_FRACTION = 0.012  # the lip edge is sharp in real faces: keep its transition narrow
# Mouth opening (inner-lip gap over mouth width) from which the operator's mouth interior shows through,
# and the opening at which it shows fully: a ramp, so the cut-out does not pop in and out.
MOUTH_OPEN_START = 0.06
MOUTH_OPEN_FULL = 0.16


def face_width(points: np.ndarray) -> float:
    """Size of the face in pixels: the larger extent (x or y) of its outline points."""
    extent = np.ptp(np.asarray(points, dtype=np.float32), axis=0)
    return float(max(extent.max(), 1.0))


def mouth_openness(upper: np.ndarray, lower: np.ndarray, left: np.ndarray, right: np.ndarray) -> float:
    """Gap between the inner lips relative to the mouth width: about 0 closed, 0.3+ wide open."""
    width = float(np.linalg.norm(np.subtract(right, left)))
    if width < 1.0:
        return 0.0
    return float(np.linalg.norm(np.subtract(lower, upper))) / width


def mouth_cut_weight(openness: float) -> float:
    """How strongly the operator's mouth interior replaces the persona's (0..1) at this openness."""
    return float(np.clip((openness - MOUTH_OPEN_START) / (MOUTH_OPEN_FULL - MOUTH_OPEN_START), 0.0, 1.0))


def feathered_mask(
    outline: np.ndarray,
    box: tuple[int, int, int, int],
    mouth: np.ndarray | None = None,
    mouth_weight: float = 0.0,
    erode: float = ERODE_FRACTION,
    feather: float = FEATHER_FRACTION,
) -> np.ndarray:
    """Soft alpha (float32 0..1, box-sized) that is 1 inside the face outline and fades out at its edge.

    `outline` is the ordered face-oval polygon in frame pixels; `mouth`, if given, is the ordered inner-lip
    polygon whose inside is cut out with strength `mouth_weight` (0 keeps the persona's mouth, 1 shows the
    operator's mouth interior fully).
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    outline = np.asarray(outline, np.float32)
    size = face_width(outline)
    origin = np.array([x0, y0], dtype=np.float32)
    # Alpha ramps from exactly 0 on the (slightly eroded) outline to 1 a feather width inside it. A ramp on
    # the distance to the edge, unlike a plain blur, reaches 0 before the warp's hard boundary. The distance
    # is taken over the whole outline, even where it leaves the frame: a face cut by the frame edge must not
    # fade out there, or the operator's own face would show along that edge.
    # The box comes from the warp's mesh points, which may reach a pixel past the outline: cover both.
    lo = np.minimum(np.floor(outline.min(axis=0)).astype(int) - 1, (x0, y0))
    hi = np.maximum(np.ceil(outline.max(axis=0)).astype(int) + 2, (x1, y1))
    inside = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
    cv2.fillPoly(inside, [_fixed(outline - lo)], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    oy, ox = y0 - lo[1], x0 - lo[0]
    dist = dist[oy : oy + h, ox : ox + w]
    alpha = _edge_alpha(dist, size, erode, feather)

    if mouth is not None and mouth_weight > 0.0:
        hole = np.zeros((h, w), np.uint8)
        cv2.fillPoly(hole, [_fixed(mouth - origin)], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        hole_alpha = blur_mask(hole, size * MOUTH_FEATHER_FRACTION).astype(np.float32) * np.float32(1 / 255)
        alpha *= 1.0 - np.float32(min(mouth_weight, 1.0)) * hole_alpha
    return alpha


_SHIFT = 4  # fractional bits of polygon coordinates for fillPoly (sub-pixel, anti-aliased edges)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Polygon in OpenCV's fixed-point form for `shift=_SHIFT`."""
    return np.round(np.asarray(points, np.float32) * (1 << _SHIFT)).astype(np.int32)


def blur_mask(mask_u8: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blurred mask or weight map (any dtype), the kernel 2.5 sigma each side, sigma at least 0.5."""
    sigma = max(sigma, 0.5)
    k = int(2 * round(2.5 * sigma) + 1)
    return cv2.GaussianBlur(mask_u8, (k, k), sigma)


def composite(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Blend `patch` into `frame[box]` in place with per-pixel weight `alpha` (1 = patch)."""
    x0, y0, x1, y1 = box
    roi = frame[y0:y1, x0:x1]
    if roi.shape != patch.shape or roi.shape[:2] != alpha.shape:
        raise ValueError("patch and alpha must match the box")
    frame[y0:y1, x0:x1] = cv2.blendLinear(patch, roi, alpha, 1.0 - alpha)


def feathered_region(inside: np.ndarray, size: float, shape: tuple[int, int],
                     box: tuple[int, int, int, int], erode: float = ERODE_FRACTION,
                     feather: float = FEATHER_FRACTION) -> np.ndarray:
    """Soft alpha (float32 0..1, box-sized) that is 1 well inside the drawn region `inside` (uint8, box-sized)
    and fades out toward its edge: for a face whose outline is what was drawn (a turned 3-D face's
    silhouette), not a polygon. Where the box meets the frame's edge the region is taken to go on, so a
    face cut by the frame does not fade out along it. `size` is the face width in pixels; `erode` and
    `feather` are fractions of it (the edge pulled in, the width of the soft edge)."""
    x0, y0, x1, y1 = box
    h, w = shape
    pad = int(np.ceil(size * (erode + feather))) + 2
    pads = (pad if y0 == 0 else 0, pad if y1 == h else 0, pad if x0 == 0 else 0, pad if x1 == w else 0)
    grown = cv2.copyMakeBorder(inside, *pads, cv2.BORDER_REPLICATE)
    grown = cv2.copyMakeBorder(grown, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(grown, cv2.DIST_L2, cv2.DIST_MASK_3)
    dist = dist[1 + pads[0] : 1 + pads[0] + (y1 - y0), 1 + pads[2] : 1 + pads[2] + (x1 - x0)]
    return _edge_alpha(dist, size, erode, feather)


def _edge_alpha(dist: np.ndarray, size: float, erode: float, feather: float) -> np.ndarray:
    """Alpha from the distance (px) to a mask's edge: 0 up to `erode` face widths in, 1 from a further
    `feather`, eased between."""
    ramp = (dist - np.float32(size * erode)) * np.float32(1.0 / (size * feather))
    np.clip(ramp, 0.0, 1.0, out=ramp)
    return smoothstep(ramp)


def smoothstep(t):
    """`t` (already 0..1, a number or an array of any float type) eased in and out: a ramp shaped by it
    shows no crease where it starts or ends."""
    return t * t * (3.0 - 2.0 * t)


def fade_above(alpha: np.ndarray, box: tuple[int, int, int, int], start: np.ndarray, end: np.ndarray) -> None:
    """Fade `alpha` (box-sized) out, in place, along the line from point `start` (alpha kept) to `end`
    (alpha 0), smoothly; pixels before `start` along that line keep theirs. Frame pixel coordinates."""
    x0, y0, x1, y1 = box
    d = np.asarray(end, np.float64) - np.asarray(start, np.float64)
    length2 = float(d @ d)
    if length2 < 1.0:
        return
    gx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(start[0])
    gy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(start[1])
    t = gx * np.float32(d[0] / length2) + gy * np.float32(d[1] / length2)
    alpha *= smoothstep(np.clip(1.0 - t, 0.0, 1.0))


def cut_mouth(alpha: np.ndarray, mouth: np.ndarray, box: tuple[int, int, int, int], size: float,
              weight: float) -> None:
    """Cut the inner-lip polygon `mouth` (frame pixels) out of `alpha` (box-sized) in place, by `weight`
    (0 keeps the persona's mouth, 1 shows the operator's mouth interior fully)."""
    if weight <= 0.0:
        return
    x0, y0, x1, y1 = box
    hole = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(hole, [_fixed(np.asarray(mouth, np.float32) - (x0, y0))], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    hole_alpha = blur_mask(hole, size * MOUTH_FEATHER_FRACTION).astype(np.float32) * np.float32(1 / 255)
    alpha *= 1.0 - np.float32(min(weight, 1.0)) * hole_alpha
