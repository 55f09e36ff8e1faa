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

import cv2
import numpy as np

from engine.face_contract import FaceOutput, check_frame
from filters.face.animate import mesh_openness
from filters.face.blend import composite, face_width, feathered_mask, mouth_cut_weight
from filters.face.color import transfer_color
from filters.face.fallback import FADE_S, HOLD_S, LostFacePolicy
from filters.face.occlusion import OccluderDetector
from filters.face.reshape import ShapeTransfer
from filters.face.landmarks import (N_MESH_POINTS, ClosesOnExit, FaceMesher, lips_inner_indices)
from filters.face.smoothing import LandmarkSmoother
from filters.face.persona_mesh import EXTRA_WARP_POINTS, opened_mouth, persona_face, warp_point_subset
from filters.face.warp import triangulate, warp_face

# A persona face larger than this is scaled down once: the warp samples it with bilinear interpolation,
# which aliases when shrinking a lot, and webcam faces are rarely wider than this.
MAX_FACE_PX = 360
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
