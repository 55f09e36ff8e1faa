"""The "portrait" face mode: the persona's own photo is the whole picture, brought to life by the operator.

Swap mode keeps the operator's room, hair and body and replaces only the face; portrait mode shows none of
the operator at all. The persona photo, fitted to the operator's frame size, is warped each frame so her
head follows the operator's head motion (damped and clamped: one photo cannot show the side of a head)
and her eyes, brows, lips and jaw follow the operator's expression (see animate.py). A ring of anchors
around her head moves with it, a second, wider ring moves less and the frame border stays fixed, so hair
and background bend smoothly instead of tearing at the face edge. When her mouth opens, the opening is
filled with the operator's own mouth interior (mouth.py) rather than her stretched closed lips.

What she shows is therefore always her own photo: identity is as good as the photo, and the cost is one
mesh, one dense warp and one small patch a frame. When the operator's face is lost, the lost-face policy
holds the last frame, then fades to the still portrait; when it is found again, it fades back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.face_contract import FaceOutput, check_frame
from filters.face.animate import LIP_LOWER, LIP_UPPER, MOUTH_LEFT, MOUTH_RIGHT, Pose, Retargeter
from filters.face.blend import face_width, mouth_openness, smoothstep
from filters.face.fallback import FADE_S, HOLD_S, LostFacePolicy, cover_fit, cover_fit_transform
from filters.face.landmarks import N_MESH_POINTS, ClosesOnExit, FaceMesher, face_down, lips_inner_indices
from filters.face.mouth import paint_interior, skin_lab
from filters.face.reshape import ring
from filters.face.persona_mesh import EXTRA_WARP_POINTS, opened_mouth, persona_face, warp_point_subset
from filters.face.warp import triangulate, warp_dense

INNER_RING = 1.5  # anchors moving with the head (hair, hat, ears), in face-outline radii from its centre
OUTER_RING = 2.3  # anchors moving a little (background, shoulders): a gentle falloff to the fixed border
OUTER_WEIGHT = 0.35
NECK_WEIGHT = 0.6  # the part of the head motion the inner ring takes below the chin (the neck turns less)
BORDER_STEP = 80  # px between fixed anchors along the frame border
EDGE_MARGIN = 0.03  # ring anchors this close to the frame border (fraction of its size) are dropped
EDGE_FALLOFF = 0.2  # and those closer than this take proportionally less of the motion (no shear at the edge)
UNFOLD_ROUNDS = 6  # rounds of easing the expression around folded triangles before giving it up
FACE_SHARE = 0.4  # a photo whose face is narrower than this share of it is cropped around the face first
MAP_STEP = 2  # the warp's source coordinates are computed every MAP_STEP px and interpolated between
# Persona mouth opening (inner-lip gap over mouth width) from which the interior starts to show, and the
# opening from which it shows fully.
MOUTH_PAINT_START = 0.03
MOUTH_PAINT_FULL = 0.08


@dataclass
class _Stage:
    """Everything about the persona photo that depends only on the output frame size."""

    size: tuple[int, int]
    photo: np.ndarray  # the photo fitted to the frame (cover, cropped around the face)
    points: np.ndarray  # (468, 2) her mesh in that frame
    subset: np.ndarray  # the mesh points that drive the warp
    anchors: np.ndarray  # (A, 2) inner ring, outer ring, border
    weights: np.ndarray  # (A,) share of the head motion each anchor takes
    src: np.ndarray  # control points in the photo: her subset points then anchors
    triangles: np.ndarray
    judged: np.ndarray  # triangles whose mirroring is a fold (a tear): the rest may mirror harmlessly
    lip_rows: np.ndarray  # rows of the inner-lip loop's points in `src`
    retarget: Retargeter
    skin: np.ndarray  # her skin's mean Lab
    rest: np.ndarray  # `points` in float64, where each frame's expression starts from
    src_sign: np.ndarray  # orientation of each triangle in the photo (a fold flips it)


class PortraitFilter(ClosesOnExit):
    """Animates the persona's photo with the operator's head pose and expression; owns its own mesher.

    Same interface as FaceSwapFilter. One instance is driven by one worker thread at a time.
    """

    mode = "portrait"

    def __init__(self, persona_photo: np.ndarray, *, hold_s: float = HOLD_S, fade_s: float = FADE_S) -> None:
        photo, points, self._oval, width = persona_face(persona_photo)
        photo, points = _frame_face(photo, points, width)
        self._photo = photo
        self._points = points
        self._focus = tuple(float(v) for v in points.mean(axis=0))
        self._policy = LostFacePolicy(photo, focus=self._focus, hold_s=hold_s, fade_s=fade_s)
        self._mouth = np.array(lips_inner_indices(), dtype=np.int32)
        loop = [int(i) for i in self._mouth]
        self._lip_slots = [loop.index(i) for i in (LIP_UPPER, LIP_LOWER, MOUTH_LEFT, MOUTH_RIGHT)]
        self._stage: _Stage | None = None
        self._mesher = FaceMesher(still=False)

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        """The persona photo animated by the operator's face in this BGR frame; the input is not modified."""
        check_frame(image)
        size = (int(image.shape[0]), int(image.shape[1]))
        found = self._mesher(image)
        if found is None:
            held, source = self._policy.lost(size, t_capture)
            return FaceOutput(held, False, source)
        stage = self._stage_for(size)
        if self._policy.portrait_weight >= 1.0:
            stage.retarget.reset()  # back after a long loss: start again from the still portrait
        out = self._animate(stage, image, found[:N_MESH_POINTS], t_capture)
        shown = self._policy.converted(out, t_capture)
        return FaceOutput(shown.copy(), True, "converted")

    def _animate(self, stage: _Stage, image: np.ndarray, operator: np.ndarray, t: float) -> np.ndarray:
        """The fitted photo warped to this frame's pose and expression, with a mouth interior if open."""
        target, pose = stage.retarget(operator, t)
        anchors = pose.apply(stage.anchors, stage.weights)
        dst = self._unfolded(stage, target, pose, anchors)
        out = warp_dense(stage.photo, stage.src, dst, stage.triangles, stage.size, MAP_STEP, pin_border=True)

        lips = dst[stage.lip_rows]  # the inner lips as warped: the interior fills the opening they leave
        k = self._lip_slots
        open_ = mouth_openness(lips[k[0]], lips[k[1]], lips[k[2]], lips[k[3]])
        strength = (open_ - MOUTH_PAINT_START) / (MOUTH_PAINT_FULL - MOUTH_PAINT_START)
        if strength > 0:
            op_skin = skin_lab(image, operator, face_width(operator[self._oval]))
            paint_interior(out, image, operator[self._mouth], lips, op_skin, stage.skin, strength)
        return out

    def _unfolded(self, stage: _Stage, target: np.ndarray, pose: Pose, anchors: np.ndarray) -> np.ndarray:
        """Control points for the warp: the posed target, with the expression eased where it would fold the
        mesh (a fold shows as a tear). Each round, the points of a folded triangle keep about half their
        expression and their neighbours most of it, so the easing stays local and smooth; if a fold survives that, the expression
        goes entirely (the pose alone is a similarity and cannot fold)."""
        rest = stage.rest
        n_sub = len(stage.subset)
        weight = np.ones(len(rest))
        for _ in range(UNFOLD_ROUNDS):
            posed = pose.apply(rest + weight[:, None] * (target - rest))
            dst = np.vstack([posed[stage.subset], anchors]).astype(np.float32)
            folded = stage.judged & (np.sign(_signed_areas(dst, stage.triangles)) != stage.src_sign)
            if not folded.any():
                return dst
            bad = np.unique(stage.triangles[folded])
            near = np.unique(stage.triangles[np.isin(stage.triangles, bad).any(axis=1)])
            weight[stage.subset[near[near < n_sub]]] *= 0.8
            weight[stage.subset[bad[bad < n_sub]]] *= 0.6
        posed = pose.apply(rest)
        return np.vstack([posed[stage.subset], anchors]).astype(np.float32)

    def _stage_for(self, size: tuple[int, int]) -> _Stage:
        """The photo, mesh and anchors for output frames of `size` (h, w); built once per size."""
        if self._stage is not None and self._stage.size == size:
            return self._stage
        h, w = size
        scale, x0, y0 = cover_fit_transform(self._photo.shape[:2], size, self._focus)
        photo = cover_fit(self._photo, size, self._focus)
        points = ((self._points + 0.5) * scale - 0.5 - np.array([x0, y0], np.float32)).astype(np.float32)
        subset = warp_point_subset(points, EXTRA_WARP_POINTS)

        centre = points[self._oval].mean(axis=0)
        down = face_down(points)
        inner, outer = ring(points, self._oval, INNER_RING), ring(points, self._oval, OUTER_RING)
        below_inner = np.clip(((inner - centre) @ down) / np.linalg.norm(inner - centre, axis=1), 0.0, 1.0)
        below_outer = np.clip(((outer - centre) @ down) / np.linalg.norm(outer - centre, axis=1), 0.0, 1.0)
        w_inner = 1.0 - (1.0 - NECK_WEIGHT) * below_inner
        w_outer = OUTER_WEIGHT * (1.0 - (1.0 - NECK_WEIGHT) * below_outer)
        margin = EDGE_MARGIN * min(h, w)
        keep_i, keep_o = _inside(inner, size, margin), _inside(outer, size, margin)
        border = _border_points(size, BORDER_STEP)
        rings = np.vstack([inner[keep_i], outer[keep_o]])
        weights = np.concatenate([w_inner[keep_i], w_outer[keep_o]])
        to_edge = np.minimum(np.minimum(rings[:, 0], w - 1 - rings[:, 0]), np.minimum(rings[:, 1], h - 1 - rings[:, 1]))
        ramp = np.clip(to_edge / (EDGE_FALLOFF * min(h, w)), 0.0, 1.0)
        weights = np.concatenate([weights * smoothstep(ramp), np.zeros(len(border))])
        anchors = np.vstack([rings, border]).astype(np.float32)

        src = np.vstack([points[subset], anchors]).astype(np.float32)
        opened = opened_mouth(points, self._mouth)
        opened_src = np.vstack([opened[subset], anchors])
        triangles = triangulate(opened_src)
        # Triangles picked on the opened mouth may be mirrored in the photo itself (closed lips); only those
        # with the same orientation, and some area, in both are judged for folds.
        a_src, a_open = _signed_areas(src, triangles), _signed_areas(opened_src, triangles)
        judged = (np.sign(a_src) == np.sign(a_open)) & (np.abs(a_src) > 1.0) & (np.abs(a_open) > 1.0)
        skin = skin_lab(photo, points, face_width(points[self._oval]))
        rows = {int(i): k for k, i in enumerate(subset)}
        lip_rows = np.array([rows[int(i)] for i in self._mouth], dtype=np.int32)  # contour points: all in
        self._stage = _Stage(size, photo, points, subset, anchors, weights, src, triangles, judged, lip_rows,
                             Retargeter(points), skin, points.astype(np.float64), np.sign(a_src))
        return self._stage

    def close(self) -> None:
        self._mesher.close()


def _frame_face(photo: np.ndarray, points: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo cropped to a square around the face (head and shoulders) when the face is small in it, so
    a full-length or group-cropped photo does not show a tiny face; and the mesh moved with the crop."""
    h, w = photo.shape[:2]
    side = int(round(width / FACE_SHARE))
    if side >= 0.75 * min(h, w):  # the face already fills much of it: keep the photo as it was composed
        return photo, points
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * side  # a little lower: shoulders show, not sky
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    return (np.ascontiguousarray(photo[top : top + side, left : left + side]),
            (points - np.array([left, top], np.float32)).astype(np.float32))


def _inside(points: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """Mask of points at least `margin` px inside a frame of `size` (h, w)."""
    h, w = size
    return ((points[:, 0] >= margin) & (points[:, 0] <= w - 1 - margin)
            & (points[:, 1] >= margin) & (points[:, 1] <= h - 1 - margin))


def _border_points(size: tuple[int, int], step: int) -> np.ndarray:
    """Fixed anchors along the frame's edge, corners included, about `step` px apart."""
    h, w = size
    xs = np.linspace(0, w - 1, max(int(round((w - 1) / step)), 1) + 1)
    ys = np.linspace(0, h - 1, max(int(round((h - 1) / step)), 1) + 1)[1:-1]
    top = np.stack([xs, np.zeros_like(xs)], 1)
    bottom = np.stack([xs, np.full_like(xs, h - 1)], 1)
    left = np.stack([np.zeros_like(ys), ys], 1)
    right = np.stack([np.full_like(ys, w - 1), ys], 1)
    return np.vstack([top, bottom, left, right]).astype(np.float32)


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    p = points[triangles].astype(np.float64)
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def for_persona(persona, models_dir=None) -> PortraitFilter:
    """The registry's constructor (filters/registry.py): this persona's photo, animated."""
    return PortraitFilter(persona.photo)
