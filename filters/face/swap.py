"""The embedded "swap" face mode: the operator stays on camera, their face is replaced by the persona's.

A 3-D swap. Per frame: MediaPipe mesh of the operator with depth -> One Euro smoothing of its points
(smoothing.py: a still head must not shimmer) -> the head pose, fitted to the canonical face (face3d.py),
which takes the operator's mesh into a pose-free frame -> there, the operator's expression (their mesh minus
their slowly learnt resting mesh at that pose, resting.py, less the little the tracker's mesh wanders at
rest) is added to the persona's own 3-D shape -> that face is put back at the operator's pose and drawn,
over the whole mesh, from the persona's pose-free texture (atlas.py, unwrapped once when the filter is
built), triangles facing the camera only, far ones first: a turned head shows the correct side of her
face, and the side her photo did not show comes from its mirror image, never a stretched sliver -> the
operator's head outline is liquified toward hers (reshape.py's ring of anchors) -> Lab colour
transfer toward the operator's skin -> feathered blend over the drawn silhouette, leaving out whatever is
in front of the face (occlusion.py: a hand or a cup stays in front of her). The operator's mouth interior
is kept while the mouth is open (persona lips, operator teeth), because stretching the persona's closed
lips over an open mouth is the most visible failure of a warp-only swap. When no face is found, the
lost-face policy (hold, then a short fade to the portrait, and a fade back when the face returns)
decides what is shown: never the operator's own face.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from engine.face_contract import FaceOutput, check_frame
from filters.face.animate import mesh_openness
from filters.face.blend import (composite, cut_mouth, face_width, fade_above, feathered_mask, feathered_region,
                                 mouth_cut_weight, smoothstep)
from filters.face.color import transfer_color
from filters.face.face3d import canonical, fit_pose, point_facing, render, signed_areas
from filters.face.fallback import FADE_S, HOLD_S, LostFacePolicy
from filters.face.landmarks import (
    N_MESH_POINTS,
    ClosesOnExit,
    FaceMesher,
    face_oval_indices,
    feature_indices,
    lips_inner_indices,
)
from filters.face.likeness import Likeness, from_photo
from filters.face.occlusion import OccluderDetector
from filters.face.persona_mesh import persona_face
from filters.face.reshape import ring
from filters.face.resting import RestingFace
from filters.face.smoothing import LandmarkSmoother
from filters.face.warp import warp_dense

# How far the face's 3-D shape moves from the operator's toward the persona's (0 keeps the operator's
# geometry, 1 is hers): proportions carry much of what makes a face recognisable.
SHAPE_STRENGTH = 1.0
# His expression is his mesh minus his resting mesh, added to her shape. At rest that difference is not
# zero: the tracker bends a resting face's mesh a little as the head turns or nods, and what it adds is
# the shape of his features (bench_likeness --quick, clips with no expression at all: median dlib
# distance to her 0.464 with it, 0.423 without any expression, 0.444 with this dead zone). So the resting
# mesh is learnt per pose (resting.py: on all 72 pairs, 40 frames each, 0.472 -> 0.455), and what still
# wanders at rest (jitter, the bend the pose terms miss) is dropped: a point that moves less than
# EXPRESSION_REST (face widths) from rest does not move her face (a soft dead zone: a larger move passes
# less this much). The lips always follow in full (speech moves them less than that), and so does the
# outline, from its frontal rest (his silhouette as the camera sees it, bend and all: her skin must not
# spill past it; from the rest at each pose it spilled over a turned head's far side, for 0.004 of
# distance); the lower face follows in full once the mouth opens (the chin drops with it), an eye once
# it closes, and a brow once it rises or knits against its eye (a grieving or surprised face lives in the
# brows, and they move about 0.02-0.05).
EXPRESSION_REST = 0.03
JAW_OPEN = (0.03, 0.10)  # lip-gap increase (mouth widths) over which the lower face comes to follow in full
BROW_MOVE = (0.008, 0.02)  # brow move against its eye (face widths) over which the brow comes to follow in full
BLINK = (0.15, 0.35)  # lid-gap closure (share of the resting gap) over which an eye comes to follow in full
# Occluders are looked for over the face outline's box grown this much (the reshaping ring included).
OCCLUSION_REACH = 1.5
BUSY_OPENNESS = 0.08  # a mouth this open (inner-lip gap over width) is talking: it hardly teaches the rest
LIQUIFY_FACING = 0.4  # only points the camera sees this squarely (left-right) steer the liquify
UNFOLD_ROUNDS = 3
HIDDEN_OUTLINE_SHRINK = 0.97
EDGE_ERODE = 0.0  # face widths the blend's edge is pulled in from the drawn silhouette
EDGE_FEATHER = 0.04  # and the width of its soft edge (measured: 0.12 gave dlib distance 0.55, 0.03-0.06 0.48-0.50)
# His own outline (as liquified) bounds hers too, pulled in a little: the tracker draws a turned head's far
# outline a little wide, and her skin must not spill past his silhouette. Pulling the edges in further shows
# his jaw and cheeks inside the blend: on 30 real pairs, erosions of 0.01 and 0.04 gave a median dlib
# distance of 0.492, 0 and 0.02 gave 0.478 (0 and 0: 0.475, but her skin spilled past a turned head).
OUTLINE_ERODE = 0.02
FOREHEAD_LINE = [105, 334]  # mid-brow points: the forehead fade runs from above them to the top of the face
FOREHEAD_KEEP = 0.7  # share of the brow-to-top height kept in full before the fade starts
MAX_OUTWARD = 0.05  # face widths his outline may move outward toward a wider face of hers (0.02 cut her
# cheeks to his narrower outline; 0.05 with a forehead kept to 0.7: 0.475 -> 0.468 without the erosion)
COLOR_INSET = 0.04  # face widths inside the blend's half-way line where the colour match samples skin
LIQUIFY_STEP = 4  # px between the liquify map's exact samples (it is smooth: interpolated in between)


class FaceSwapFilter(ClosesOnExit):
    """Replaces the operator's face with the persona's in each frame; owns its own tracking mesher.

    `likeness` (the persona's texture and 3-D shape) is learnt from the photo unless given (a persona made
    from a video brings its own). One instance is driven by one worker thread at a time.
    """

    mode = "swap"

    def __init__(self, persona_photo: np.ndarray, *, hold_s: float = HOLD_S,
                 shape_strength: float = SHAPE_STRENGTH, fade_s: float = FADE_S,
                 likeness: Likeness | None = None) -> None:
        photo, points, oval, _ = persona_face(persona_photo)
        self._policy = LostFacePolicy(photo, focus=tuple(points.mean(axis=0)), hold_s=hold_s, fade_s=fade_s)
        self._likeness = likeness if likeness is not None else from_photo(photo)
        self._canon = canonical()
        self._strength = float(shape_strength)
        self._oval = np.array(face_oval_indices(), dtype=np.int32)
        self._mouth = np.array(lips_inner_indices(), dtype=np.int32)
        # The liquify is steered by the outline and the lips only: her face covers the rest of his, so
        # interior points would only add triangles to rasterise (a third of the points, under half the cost).
        # The lips (outer and inner line) are liquified too: his mouth interior, shown through hers when it
        # is open, must be moved to where her lips are.
        self._lips = feature_indices("lips")
        self._outline_set = np.union1d(self._oval, self._lips)
        tris = self._canon.triangles
        self._facing_tris = tris[np.isin(tris, self._outline_set).any(axis=1)]  # all those around its points
        # The liquify moves the jaw and cheeks, not the hairline: moving the forehead drags his hair about.
        # Her shape is taken in full from the brows down and eased to his at the top of the forehead, so her
        # face always reaches his hairline (nothing of his forehead shows above hers).
        ys = self._canon.points[:, 1]
        brow, top, chin = ys[[105, 334]].mean(), ys.min(), ys[152]
        self._liquify_weight = np.clip((ys - brow) / (0.25 * (chin - brow)), 0.0, 1.0)
        self._shape_weight = np.clip((ys - top) / (brow - top), 0.0, 1.0)[:, None]
        self._lower = np.clip((ys - ys[2]) / (0.5 * (ys[13] - ys[2])), 0.0, 1.0)  # 0 at the nose base, 1 at the lips
        self._eyes = [_eye_points(side) for side in ("left", "right")]
        self._rest = RestingFace()
        self._mesher = FaceMesher(still=False, depth=True)
        self._smoother = LandmarkSmoother()
        self._occluders = OccluderDetector()

    @property
    def likeness(self) -> Likeness:
        return self._likeness

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        """Convert one BGR frame captured at `t_capture` seconds; the input is not modified."""
        check_frame(image)
        size = image.shape[:2]
        found = self._mesher(image)
        out = None
        if found is not None:
            if self._policy.portrait_weight >= 1.0:
                self._rest = RestingFace()  # back after a long loss: perhaps someone else, learn anew
            operator = found[:N_MESH_POINTS]
            smooth = self._smoother(operator, t_capture, face_width(operator[self._oval, :2]))
            out = self._convert(image, smooth.astype(np.float64))
        if out is None:
            self._smoother.reset()
            held, source = self._policy.lost(size, t_capture)
            return FaceOutput(held, False, source)
        shown = self._policy.converted(out, t_capture)
        return FaceOutput(shown.copy(), True, "converted")

    def target(self, operator: np.ndarray) -> np.ndarray:
        """The persona's face (468, 3) for the operator's mesh (468, 3): her shape, his expression and pose."""
        pose = fit_pose(operator)
        own = pose.undo(operator)
        yaw, pitch, _ = pose.angles()
        # Learnt at every pose (resting.py); a talking mouth hardly teaches it.
        openness = mesh_openness(own)
        busy = self._rest.learnt and openness > mesh_openness(self._rest.at(yaw, pitch)) + BUSY_OPENNESS
        self._rest.learn(own, yaw, pitch, busy)
        if not self._rest.learnt:  # no usable pose yet
            return operator
        rest = self._rest.at(yaw, pitch)
        # His outline is his silhouette as the camera sees it, bend and all: it moves from his frontal rest.
        rest[self._oval] = self._rest.front[self._oval]
        shape = rest + self._expression(own, rest, openness) \
            + self._strength * self._shape_weight * (self._likeness.shape - rest)
        return pose.apply(shape)

    def _expression(self, own: np.ndarray, rest: np.ndarray, openness: float | None = None) -> np.ndarray:
        """His expression (468, 3) in the canonical frame: his mesh minus his resting one at this pose
        (`rest`), less what the tracker adds at rest (EXPRESSION_REST's dead zone); in full on the lips and
        the outline, over the lower face while the mouth opens, over an eye while it closes and on a brow
        that moves against its eye. `openness` is mesh_openness(own), when the caller has it."""
        delta = own - rest
        n = np.linalg.norm(delta, axis=1)
        keep = np.maximum(n - EXPRESSION_REST, 0.0) / np.maximum(n, 1e-9)
        jaw = _ramp((mesh_openness(own) if openness is None else openness) - mesh_openness(rest), JAW_OPEN)
        keep += jaw * self._lower * (1.0 - keep)
        for points, upper, lower, brow in self._eyes:
            gap_rest = np.linalg.norm(rest[upper, :2] - rest[lower, :2], axis=1).mean()
            gap = np.linalg.norm(own[upper, :2] - own[lower, :2], axis=1).mean()
            keep[points] += _ramp(1.0 - gap / max(gap_rest, 1e-9), BLINK) * (1.0 - keep[points])
            # A brow raised or knitted moves against its eye; the mesh's wander moves both together.
            lift = np.linalg.norm(delta[brow, :2].mean(axis=0) - delta[points, :2].mean(axis=0))
            keep[brow] += _ramp(lift, BROW_MOVE) * (1.0 - keep[brow])
        keep[self._lips] = 1.0
        keep[self._oval] = 1.0  # his silhouette as the camera sees it: her outline must not spill past it
        return delta * keep[:, None]

    def _convert(self, image: np.ndarray, operator: np.ndarray) -> np.ndarray | None:
        """The frame with the persona's face drawn in, or None if the face lies outside the frame."""
        shape = image.shape[:2]
        out = image.copy()
        target = self.target(operator)
        op2, dst2 = operator[:, :2], target[:, :2]
        outline = op2[self._oval]
        if self._strength > 0:
            outline = self._liquify(image, out, operator, target)
        atlas = self._likeness.atlas
        # All 898 triangles, not the lighter mesh: drawn back at its own pose, a face lost 0.05-0.12 of dlib
        # distance over the lighter one's larger triangles (eyelids, nose and mouth corners bent straight),
        # 0.01-0.05 over the whole one; on all 72 pairs 0.455 -> 0.446, for about 0.3-0.5 ms a frame.
        patch, drawn, box = render(atlas.texture, atlas.points, target, self._canon.triangles, shape)
        x0, y0, x1, y1 = box
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        size = face_width(dst2[self._oval])
        # Inside what was drawn, and inside his head's outline as liquified: where the liquify could not
        # follow (the far side of a turned head), her face must not spill past his silhouette.
        alpha = np.minimum(feathered_region(drawn, size, shape, box, EDGE_ERODE, EDGE_FEATHER),
                           feathered_mask(outline, box, erode=OUTLINE_ERODE, feather=EDGE_FEATHER))
        # A narrow edge keeps her jaw and cheek line (much of a likeness); the top of the forehead fades
        # out instead, so her hairline does not cut across his forehead.
        brow, top = dst2[FOREHEAD_LINE].mean(axis=0), dst2[10]
        fade_above(alpha, box, brow + FOREHEAD_KEEP * (top - brow), top + 0.1 * (top - brow))
        cut_mouth(alpha, dst2[self._mouth], box, size, mouth_cut_weight(mesh_openness(dst2)))
        obox = _grown_box(op2[self._oval], OCCLUSION_REACH, shape)
        occlusion = self._occluders(image, op2.astype(np.float32), obox)
        roi = out[y0:y1, x0:x1]
        # Colours are matched on the face's inner skin: the blend's edge reaches his outline, where his hair
        # and the room would skew the match (and skew it differently when a hand hides part of the face).
        inset = 2 * int(round(COLOR_INSET * size)) + 1
        skin = cv2.erode((alpha > 0.5).view(np.uint8), np.ones((inset, inset), np.uint8)) > 0
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

    def _liquify(self, image: np.ndarray, out: np.ndarray, operator: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Move the operator's own head outline (jaw, cheeks) to where hers is, in `out`, so none of his
        face shows beside hers. Only points the camera sees steer it; a ring of anchors holds the rest.
        Returns the face outline's points (2-D) where the liquify put them."""
        sub = self._outline_set
        seen = sub[point_facing(operator, sideways=True, triangles=self._facing_tris)[sub] > LIQUIFY_FACING]
        outline = operator[self._oval, :2].copy()
        centre = outline.mean(axis=0)
        if len(seen) < 8:
            return outline
        # The ring holds the room; the outline points the camera does not see (the far side of a turned
        # head) hold his silhouette there, so nothing beside it is dragged.
        unseen = np.zeros(len(operator), bool)  # np.setdiff1d(oval, seen) by a mask: sorted, a tenth the cost
        unseen[self._oval] = True
        unseen[seen] = False
        hidden = np.flatnonzero(unseen)
        anchors = np.concatenate([ring(operator[:, :2].astype(np.float32), self._oval), operator[hidden, :2]])
        src = np.concatenate([operator[seen, :2], anchors]).astype(np.float32)
        step = self._liquify_weight[seen, None] * (target[seen, :2] - operator[seen, :2])
        # Outward, his outline moves at most a little: past it lies his hair or the room, which the move
        # would smear and her skin would then cover. Inward (a narrower face) it follows hers fully.
        radial = operator[seen, :2] - centre
        radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-6)
        out_by = (step * radial).sum(axis=1, keepdims=True)
        limit = MAX_OUTWARD * face_width(outline)
        step -= np.maximum(out_by - limit, 0.0) * radial
        moved = operator[seen, :2] + step
        dst = np.concatenate([moved, anchors]).astype(np.float32)
        tris = Delaunay(src).simplices.astype(np.int32)
        s_src = np.sign(signed_areas(src, tris))
        # Ease back the points of any triangle the move would fold (a tear): halve their move, and if that
        # is not enough, leave them where they are; neighbours may then fold in turn, so a few rounds.
        for k in range(2 * UNFOLD_ROUNDS + 1):
            folded = np.sign(signed_areas(dst, tris)) != s_src
            if not folded.any():
                break
            bad = np.unique(tris[folded])
            dst[bad] = src[bad] + (0.5 if k < UNFOLD_ROUNDS else 0.0) * (dst[bad] - src[bad])
        else:
            return outline  # still folded: leave his outline as it is rather than tear it
        # The move is smooth, so its map is computed on a coarse grid over the ring's box and interpolated
        # (warp_dense); outside the mesh the map is the identity, so the box is simply written back.
        h, w = image.shape[:2]
        lo = np.maximum(np.floor(np.minimum(src.min(axis=0), dst.min(axis=0))).astype(int) - 2, 0)
        hi = np.minimum(np.ceil(np.maximum(src.max(axis=0), dst.max(axis=0))).astype(int) + 3, (w, h))
        if np.all(hi - lo > LIQUIFY_STEP):
            (x0, y0), (x1, y1) = lo, hi
            crop = image[y0:y1, x0:x1]
            warp_dense(crop, src - lo, dst - lo, tris, crop.shape[:2], LIQUIFY_STEP, out=out[y0:y1, x0:x1])
        # Seen outline points where the liquify put them; the others (the tracker's far outline lies a
        # little outside the silhouette it sees) pulled in. `seen` is sorted: a search finds each row.
        pos = np.minimum(np.searchsorted(seen, self._oval), len(seen) - 1)
        hit = (seen[pos] == self._oval)[:, None]
        return np.where(hit, dst[pos], centre + HIDDEN_OUTLINE_SHRINK * (outline - centre))

    def close(self) -> None:
        self._mesher.close()


def _ramp(x: float, span: tuple[float, float]) -> float:
    """0 below span[0], 1 above span[1], smoothstep between."""
    return smoothstep(float(np.clip((x - span[0]) / (span[1] - span[0]), 0.0, 1.0)))


def _eye_points(side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(all points, upper-lid points over the iris, the lower-lid points below them, the brow's points)
    of one eye."""
    from filters.face.animate import LEFT_EYE, RIGHT_EYE

    pairs = (LEFT_EYE if side == "left" else RIGHT_EYE)[2:5]
    return (feature_indices(f"{side}_eye"), np.array([u for u, _ in pairs]), np.array([lo for _, lo in pairs]),
            feature_indices(f"{side}_eyebrow"))



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


def for_persona(persona, models_dir=None) -> FaceSwapFilter:
    """The registry's constructor (filters/registry.py): the embedded swap of this persona's photo, drawn
    from the likeness kept in its derived data (learnt now if it has none)."""
    from filters.face.likeness import likeness_for

    return FaceSwapFilter(persona.photo, likeness=likeness_for(persona))
