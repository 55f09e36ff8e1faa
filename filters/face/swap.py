"""The embedded "swap" face mode: the operator stays on camera, their face is replaced by the persona's.

Per frame: MediaPipe mesh of the operator -> One Euro smoothing of its points (smoothing.py: a still head
must not shimmer) -> target points with the persona's proportions (reshape.py; eased off as the head
turns, since they are a frontal face's) -> piecewise-affine warp of the persona photo onto those points
-> Lab colour transfer toward the operator's skin -> feathered blend, leaving out whatever is in front of
the face (occlusion.py: a hand or a cup stays in front of her). The operator's mouth interior is kept
while the mouth is open (persona lips, operator teeth), because stretching the persona's closed lips
over an open mouth is the most visible failure of a warp-only swap. When no face is found, the
lost-face policy (hold, then a short fade to the portrait, and a fade back when the face returns)
decides what is shown: never the operator's own face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import PersonaError
from filters.face.animate import LIP_LOWER, LIP_UPPER, MOUTH_LEFT, MOUTH_RIGHT, mesh_openness
from filters.face.blend import composite, face_width, feathered_mask, mouth_cut_weight
from filters.face.color import transfer_color
from filters.face.fallback import FADE_S, HOLD_S, LostFacePolicy
from filters.face.occlusion import OccluderDetector
from filters.face.reshape import ShapeTransfer
from filters.face.landmarks import (N_MESH_POINTS, ClosesOnExit, FaceMesher, face_down, face_oval_indices,
                                    lips_inner_indices)
from filters.face.smoothing import LandmarkSmoother
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
# Head turn (see head_turn) up to which the persona's proportions are transferred in full, and from which
# not at all. Those proportions are a frontal face's: on a turned head they push the far cheek out past
# the operator's silhouette, over the background. About 10 and 40 degrees of yaw.
TURN_FULL = 0.12
TURN_NONE = 0.45
# Occluders are looked for over the face outline's box grown this much (the reshaping ring included).
OCCLUSION_REACH = 1.5


@dataclass
class FaceOutput:
    image: np.ndarray  # BGR uint8, same size as input
    face_found: bool
    source: str  # "converted" | "held" | "portrait" (also while fading to it)


class FaceSwapFilter(ClosesOnExit):
    """Replaces the operator's face with the persona's in each frame; owns its own tracking mesher.

    One instance is driven by one worker thread at a time (the mesher keeps tracking state between frames).
    """

    def __init__(self, persona_photo: np.ndarray, *, hold_s: float = HOLD_S,
                 shape_strength: float = SHAPE_STRENGTH, fade_s: float = FADE_S) -> None:
        photo, points, oval, width = persona_face(persona_photo)
        self._policy = LostFacePolicy(photo, focus=tuple(points.mean(axis=0)), hold_s=hold_s, fade_s=fade_s)
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
        self._smoother = LandmarkSmoother()
        self._occluders = OccluderDetector()

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        """Convert one BGR frame captured at `t_capture` seconds; the input is not modified."""
        check_frame(image)
        size = image.shape[:2]
        found = self._mesher(image)
        out = None
        if found is not None:
            if self._policy.portrait_weight >= 1.0:
                self._shape.reset()  # back after a long loss: perhaps someone else, relearn the neutral face
            operator = found[:N_MESH_POINTS]
            smooth = self._smoother(operator, t_capture, face_width(operator[self._oval]))
            out = self._convert(image, smooth)
        if out is None:
            self._smoother.reset()
            held, source = self._policy.lost(size, t_capture)
            return FaceOutput(held, False, source)
        shown = self._policy.converted(out, t_capture)
        return FaceOutput(shown.copy(), True, "converted")

    def _convert(self, image: np.ndarray, operator: np.ndarray) -> np.ndarray | None:
        """The frame with the persona's face blended in, or None if the face lies outside the frame."""
        sub = self._subset
        out = image.copy()
        dst = operator
        turned = float(np.clip((abs(head_turn(operator)) - TURN_FULL) / (TURN_NONE - TURN_FULL), 0.0, 1.0))
        strength = self._shape.strength * (1.0 - turned)
        if self._shape.strength > 0:
            dst = self._shape.target(operator, strength, learn=turned == 0.0)
        if strength > 0.01:
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
        openness = mesh_openness(dst)
        alpha = feathered_mask(dst[self._oval], box, dst[self._mouth], mouth_cut_weight(openness))
        alpha *= warped > 0  # never show warp pixels the mesh did not cover
        obox = _grown_box(operator[self._oval], OCCLUSION_REACH, image.shape[:2])
        occlusion = self._occluders(image, operator, obox)
        roi = out[y0:y1, x0:x1]
        skin = alpha > 0.5
        if occlusion is not None:
            alpha *= 1.0 - _crop(occlusion.mask, obox, box)  # nor paint skin over a hand or a cup
            # and match colours on skin alone: a green glove must not tint her face green.
            skin &= _crop(occlusion.skin.astype(np.float32), obox, box) > 0
        patch = transfer_color(patch, roi, skin.view(np.uint8))
        composite(out, patch, alpha, box)
        if occlusion is not None:
            # The occluder as the camera saw it: the reshaping moved it with the head outline.
            ox0, oy0, ox1, oy1 = obox
            composite(out, image[oy0:oy1, ox0:ox1], occlusion.mask, obox)
        return out

    def close(self) -> None:
        self._mesher.close()


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
    a, b = sorted((loop.index(MOUTH_LEFT), loop.index(MOUTH_RIGHT)))
    half = loop[a + 1 : b]
    lower = half if LIP_LOWER in half else loop[b + 1 :] + loop[:a]
    upper = [i for i in loop if i not in lower and i not in (MOUTH_LEFT, MOUTH_RIGHT)]
    down = face_down(pts)
    centre = (pts[LIP_UPPER] + pts[LIP_LOWER]) / 2
    below = np.clip(((pts - centre) @ down) / 3.0, 0.0, 1.0)
    below[lower] = 1.0
    below[upper] = 0.0
    below[[MOUTH_LEFT, MOUTH_RIGHT]] = 0.0
    mouth_w = float(np.linalg.norm(pts[MOUTH_RIGHT] - pts[MOUTH_LEFT]))
    return (pts + (drop * mouth_w * below)[:, None] * down).astype(np.float32)


def persona_face(persona_photo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(photo, mesh points, face-outline indices, face width in px) of a persona photo, or a PersonaError
    saying what is wrong with it (no face, or a face too small to use)."""
    photo = _check_photo(persona_photo)
    with FaceMesher(still=True) as still:
        points = still(photo)
    if points is None:
        raise PersonaError(NO_FACE_MESSAGE)
    points = points[:N_MESH_POINTS].astype(np.float32)
    oval = np.array(face_oval_indices(), dtype=np.int32)
    width = face_width(points[oval])
    if width < MIN_FACE_PX:
        raise PersonaError(f"the face in the persona photo is only {width:.0f} px across: use a photo "
                           f"where the face is at least {MIN_FACE_PX} px wide")
    return photo, points, oval, width


def check_frame(image: np.ndarray) -> None:
    """Refuse anything but the BGR uint8 (h, w, 3) frames every face filter takes."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("expected a BGR uint8 image of shape (h, w, 3)")


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


def head_turn(points: np.ndarray) -> float:
    """Signed left-right turn of the head from its 2-D mesh: 0 frontal, about +-0.3 at 30 degrees of yaw.

    The nose tip's offset between the two sides of the face outline, relative to the face's width.
    """
    nose, right, left = points[4], points[234], points[454]
    d_right, d_left = float(np.linalg.norm(nose - right)), float(np.linalg.norm(nose - left))
    return (d_left - d_right) / max(d_left + d_right, 1e-6)


def _grown_box(outline: np.ndarray, scale: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) of `outline` grown `scale` times about its centre, clipped to `shape` (h, w)."""
    pts = np.asarray(outline, np.float32)
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    half = (pts.max(axis=0) - pts.min(axis=0)) / 2 * scale
    h, w = shape
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int) + 1
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)


def _crop(mask: np.ndarray, mask_box: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The part of `mask` (covering `mask_box`) that falls in `box`, zero where it does not reach."""
    mx0, my0, mx1, my1 = mask_box
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    ix0, iy0, ix1, iy1 = max(x0, mx0), max(y0, my0), min(x1, mx1), min(y1, my1)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = mask[iy0 - my0 : iy1 - my0, ix0 - mx0 : ix1 - mx0]
    return out
