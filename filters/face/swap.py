"""The embedded "swap" face mode: the operator stays on camera, their face is replaced by the persona's.

Per frame: MediaPipe mesh of the operator -> piecewise-affine warp of the persona photo onto those points
-> Lab colour transfer toward the operator's skin -> feathered blend. The operator's mouth interior is
kept while the mouth is open (persona lips, operator teeth), because stretching the persona's closed lips
over an open mouth is the most visible failure of a warp-only swap. When no face is found, the
lost-face policy (hold, then portrait) decides what is shown: never the operator's own face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import PersonaError
from filters.face.blend import composite, face_width, feathered_mask, mouth_cut_weight, mouth_openness
from filters.face.color import transfer_color
from filters.face.fallback import HOLD_S, LostFacePolicy
from filters.face.reshape import ShapeTransfer
from filters.face.landmarks import N_MESH_POINTS, FaceMesher, face_oval_indices, lips_inner_indices
from filters.face.warp import triangulate, warp_face

NO_FACE_MESSAGE = ("no face found in the persona photo: use a photo where one face is clearly visible, "
                   "frontal, at least 100 px wide")
MIN_FACE_PX = 100
# A persona face larger than this is scaled down once: the warp samples it with bilinear interpolation,
# which aliases when shrinking a lot, and webcam faces are rarely wider than this.
MAX_FACE_PX = 360
# Warp control points: the feature contours and nose, plus this many more spread over cheeks and forehead.
# About 190 of the 468 mesh points give a third of the triangles (the warp's per-triangle cost) with the
# same outline, eyes, brows, nose and lips.
EXTRA_WARP_POINTS = 40
# How far the operator's face proportions move toward the persona's (0 keeps the operator's geometry).
# Measured on the demo persona: dlib distance to the persona 0.54 at 0, 0.39 at 0.5, 0.33 at 0.8.
SHAPE_STRENGTH = 0.8
# Mesh indices: inner-lip midpoints (upper, lower) and inner mouth corners.
_LIP_UPPER, _LIP_LOWER, _MOUTH_LEFT, _MOUTH_RIGHT = 13, 14, 78, 308


@dataclass
class FaceOutput:
    image: np.ndarray  # BGR uint8, same size as input
    face_found: bool
    source: str  # "converted" | "held" | "portrait"


class FaceSwapFilter:
    """Replaces the operator's face with the persona's in each frame; owns its own tracking mesher.

    One instance is driven by one worker thread at a time (the mesher keeps tracking state between frames).
    """

    def __init__(self, persona_photo: np.ndarray, *, hold_s: float = HOLD_S,
                 shape_strength: float = SHAPE_STRENGTH) -> None:
        photo = _check_photo(persona_photo)
        with FaceMesher(still=True) as still:
            points = still(photo)
        if points is None:
            raise PersonaError(NO_FACE_MESSAGE)
        points = points[:N_MESH_POINTS]
        oval = np.array(face_oval_indices(), dtype=np.int32)
        width = face_width(points[oval])
        if width < MIN_FACE_PX:
            raise PersonaError(f"the face in the persona photo is only {width:.0f} px across: use a photo "
                               f"where the face is at least {MIN_FACE_PX} px wide")
        self._policy = LostFacePolicy(photo, focus=tuple(points.mean(axis=0)), hold_s=hold_s)
        scale = min(1.0, MAX_FACE_PX / width)
        if scale < 1.0:
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            points = points * np.float32(scale)
        self._photo = photo
        self._points = points.astype(np.float32)
        self._subset = warp_point_subset(self._points, EXTRA_WARP_POINTS)
        self._mouth = np.array(lips_inner_indices(), dtype=np.int32)
        self._triangles = triangulate(opened_mouth(self._points, self._mouth)[self._subset])
        self._oval = oval
        self._shape = ShapeTransfer(self._points, self._subset, oval, strength=shape_strength)
        self._mesher = FaceMesher(still=False)

    @property
    def hold_s(self) -> float:
        return self._policy.hold_s

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        """Convert one BGR frame captured at `t_capture` seconds; the input is not modified."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("expected a BGR uint8 image of shape (h, w, 3)")
        size = image.shape[:2]
        found = self._mesher(image)
        out = self._convert(image, found[:N_MESH_POINTS]) if found is not None else None
        if out is None:
            held, source = self._policy.lost(size, t_capture)
            return FaceOutput(held, False, source)
        self._policy.converted(out, t_capture)
        return FaceOutput(out.copy(), True, "converted")

    def _convert(self, image: np.ndarray, operator: np.ndarray) -> np.ndarray | None:
        """The frame with the persona's face blended in, or None if the face lies outside the frame."""
        sub = self._subset
        out = image.copy()
        dst = operator
        if self._shape.strength > 0:
            dst = self._shape.target(operator)
            src_pts, dst_pts = self._shape.liquify_points(operator, dst)
            moved, inside, (bx0, by0, bx1, by1) = warp_face(image, src_pts, dst_pts,
                                                             self._shape.liquify_triangles, image.shape[:2])
            if bx1 > bx0:
                region = out[by0:by1, bx0:bx1]
                np.copyto(region, moved, where=(inside > 0)[..., None])
        patch, warped, box = warp_face(self._photo, self._points[sub], dst[sub], self._triangles,
                                       image.shape[:2])
        x0, y0, x1, y1 = box
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        openness = mouth_openness(dst[_LIP_UPPER], dst[_LIP_LOWER], dst[_MOUTH_LEFT], dst[_MOUTH_RIGHT])
        alpha = feathered_mask(dst[self._oval], box, dst[self._mouth], mouth_cut_weight(openness))
        alpha *= warped > 0  # never show warp pixels the mesh did not cover
        roi = out[y0:y1, x0:x1]
        skin = (alpha > 0.5).view(np.uint8)
        patch = transfer_color(patch, roi, skin)
        composite(out, patch, alpha, box)
        return out

    def close(self) -> None:
        self._mesher.close()

    def __enter__(self) -> "FaceSwapFilter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warp_point_subset(points: np.ndarray, extra: int) -> np.ndarray:
    """Mesh indices to warp with: every feature-contour and nose point, plus `extra` interior points.

    The extra points are picked by farthest-point sampling on the persona's mesh so they cover the
    cheeks and forehead evenly, keeping the skin's shape while cutting the triangle count.
    """
    from mediapipe.python.solutions import face_mesh as fm

    chosen = sorted({i for edges in (fm.FACEMESH_CONTOURS, fm.FACEMESH_NOSE) for e in edges for i in e})
    pts = np.asarray(points[:N_MESH_POINTS], dtype=np.float64)
    rest = np.setdiff1d(np.arange(len(pts)), chosen)
    dist = np.min(np.linalg.norm(pts[rest, None, :] - pts[None, chosen, :], axis=2), axis=1)
    for _ in range(min(extra, len(rest))):
        k = int(np.argmax(dist))
        chosen.append(int(rest[k]))
        dist = np.minimum(dist, np.linalg.norm(pts[rest] - pts[rest[k]], axis=1))
    return np.array(sorted(chosen), dtype=np.int32)


def opened_mouth(points: np.ndarray, inner_lips: np.ndarray, drop: float = 0.3) -> np.ndarray:
    """The persona's points with the jaw dropped by `drop` mouth widths, used only to pick triangles.

    Triangulating the closed mouth joins upper-lip points to lower-lip points across the lip line; when
    the operator opens their mouth those triangles stretch lip colour into streaks beside the opening.
    With the mouth opened first, triangles bridge the opening only between inner-lip points, so every
    stretched triangle lies inside the inner-lip polygon, which the blend cuts out.
    """
    pts = np.asarray(points, dtype=np.float64)
    loop = [int(i) for i in inner_lips]
    a, b = sorted((loop.index(_MOUTH_LEFT), loop.index(_MOUTH_RIGHT)))
    half = loop[a + 1 : b]
    lower = half if _LIP_LOWER in half else loop[b + 1 :] + loop[:a]
    upper = [i for i in loop if i not in lower and i not in (_MOUTH_LEFT, _MOUTH_RIGHT)]
    down = pts[152] - pts[168]  # chin minus nose bridge: the face's own "down", whatever its roll
    down /= max(float(np.linalg.norm(down)), 1e-6)
    centre = (pts[_LIP_UPPER] + pts[_LIP_LOWER]) / 2
    below = np.clip(((pts - centre) @ down) / 3.0, 0.0, 1.0)
    below[lower] = 1.0
    below[upper] = 0.0
    below[[_MOUTH_LEFT, _MOUTH_RIGHT]] = 0.0
    mouth_w = float(np.linalg.norm(pts[_MOUTH_RIGHT] - pts[_MOUTH_LEFT]))
    return (pts + (drop * mouth_w * below)[:, None] * down).astype(np.float32)


def _check_photo(photo: np.ndarray) -> np.ndarray:
    """The photo as a contiguous BGR uint8 array, or a PersonaError saying what is wrong with it."""
    if not isinstance(photo, np.ndarray) or photo.size == 0:
        raise PersonaError("the persona photo is empty: give a JPEG or PNG photo of the face")
    if photo.dtype != np.uint8:
        raise PersonaError("the persona photo must be 8-bit: save it as a JPEG or PNG and load it again")
    if photo.ndim == 2:
        photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    elif photo.ndim == 3 and photo.shape[2] == 4:
        photo = cv2.cvtColor(photo, cv2.COLOR_BGRA2BGR)
    elif photo.ndim != 3 or photo.shape[2] != 3:
        raise PersonaError("the persona photo must be a colour or greyscale image: give a JPEG or PNG photo")
    return np.ascontiguousarray(photo)
