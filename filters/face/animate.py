"""Driving the persona's own landmarks with the operator's head pose and expression (portrait mode).

The operator's mesh is brought into the persona photo's frame by a similarity fitted on points that
expressions barely move (forehead, nose bridge, eye corners, temples). What is left after that fit, minus
the operator's running neutral shape, is their expression: blinks, brow raises, smiles, the jaw and lips
of speech. Those deltas are added to the persona's points. The fitted similarity itself, relative to the
operator's running neutral pose, is their head motion: a damped, clamped copy of it turns, tilts and
shifts the persona's head. Deltas rather than absolute shapes are what keep the persona's identity: her
proportions stay hers, only their changes come from the operator.

The neutral shape and pose follow the operator slowly (seconds), so a new sitting position or a resting
face that differs from the first frame settles back to the persona's still portrait; frames that show an
expression (talking, a blink, raised brows, a turned head) hardly teach the neutral shape at all.

Smoothing (smoothing.py) is applied to the aligned shape and, more strongly, to the pose, not to the
operator's raw points: per-point smoothing of a moving head bends the face (each point's own speed sets
its own smoothing), which here would show as a grimace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from filters.face.blend import face_width, mouth_openness
from filters.face.landmarks import face_down, face_oval_indices
from filters.face.reshape import inverse2, similarity
from filters.face.smoothing import LandmarkSmoother

# Mesh points that move little with expression: forehead, nose bridge and tip, eye corners, temples, cheekbones.
RIGID = np.array([10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 33, 133, 362, 263, 234, 454, 127, 356,
                  116, 345, 123, 352], dtype=np.int32)
# (upper, lower) point pairs across each eye and across the mouth opening, outer corner to inner corner.
RIGHT_EYE = ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155))
LEFT_EYE = ((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382))
INNER_LIPS = ((191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318),
              (415, 324))
LIP_UPPER, LIP_LOWER, MOUTH_LEFT, MOUTH_RIGHT = 13, 14, 78, 308

NEUTRAL_SHAPE_S = 4.0  # the resting face follows over about this long
NEUTRAL_POSE_S = 8.0  # the resting head position follows more slowly: a held turn should stay turned
WARM_FRAMES = 15  # over the first frames the resting face follows at WARM_RATE a frame
WARM_RATE = 0.3
SPEAKING_OPENNESS = 0.05  # a mouth opener than the resting one by this much is talking
BLINKING = 0.85  # lids closer than this fraction of their resting gap are blinking
REST_DEVIATION = 0.03  # face widths: a point further than this from its resting place is an expression
BUSY_RATE = 0.1  # fraction of the resting-face update during an expression (talking, blinking, ...)
MAX_DELTA = 0.3  # the largest expression delta of a point, in persona face widths (tracker glitches)
# Head motion copied onto the portrait: gains and limits. The portrait is one photo: past these the warp
# would have to invent what the photo never showed (the side of the head, the background behind it).
POSE_GAIN = 0.8
MAX_ROLL_DEG = 15.0
MAX_SCALE = 0.12  # +-12 % size
MAX_SHIFT = 0.12  # face widths
# The head pose is smoothed more than the landmarks: no operator image has to stay aligned with it, and
# the rigid fit turns a little landmark jitter into a wobble of the whole photo.
POSE_MIN_CUTOFF = 0.5
POSE_BETA = 10.0
POSE_JITTER_SPEED = 0.05
# A head moving more than this (face widths) in one frame has jumped: MediaPipe's tracking mesh of that
# frame comes from a crop meant for the old position and is bent out of shape, so the expression of the
# frame before is kept for it (the pose still follows).
JUMP = 0.12
MIN_EYE_GAP = 0.3  # px: a closed eye's lids meet but never cross (a fold in the warp)
# The tracker sees a full blink as the lid gap falling to about half of its resting value, not to zero:
# a relative gap of 1 - EYE_FULL_CLOSE closes the persona's eye fully (linear in between), or her blinks
# would only ever be half blinks. The upper lid does most of the travel, as in a real blink.
EYE_FULL_CLOSE = 0.55
UPPER_LID_SHARE = 0.8
# Lid-gap changes under this fraction are not a blink: the tracker's residual jitter and a lid still
# settling after one would otherwise flicker the persona's eyes (the mapping above multiplies them).
BLINK_DEADZONE = 0.06


@dataclass
class Pose:
    """Head motion relative to the neutral pose, as a map of persona-photo points: p -> (p - c) @ m.T + c + shift."""

    m: np.ndarray  # 2x2 rotation * scale
    centre: np.ndarray  # (2,)
    shift: np.ndarray  # (2,)

    def apply(self, points: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
        """`points` moved by this pose, each by the fraction `weight` (1: rigidly with the head)."""
        p = np.asarray(points, np.float64)
        moved = (p - self.centre) @ self.m.T + self.centre + self.shift
        w = np.asarray(weight, np.float64)
        if w.ndim:
            w = w[:, None]
        return p + w * (moved - p)


class Retargeter:
    """Persona target points for each operator frame: the persona's shape plus the operator's motion."""

    def __init__(self, persona_points: np.ndarray) -> None:
        self._persona = np.asarray(persona_points, np.float64)[:468]
        p = self._persona
        self._oval = np.array(face_oval_indices(), dtype=np.int32)
        self.face_size = face_width(p[self._oval])
        self.centre = p[RIGID].mean(axis=0)
        self.down = face_down(p)
        self._neutral: np.ndarray | None = None  # operator's resting shape in persona coordinates
        self._pose: np.ndarray | None = None  # operator's resting (log scale, roll, centre x, centre y)
        self._t: float | None = None
        self._seen = 0  # frames since the last reset
        # Two handles on her head (the rigid centre and a point a face width to its right), carried into the
        # operator's frame each frame: smoothing them there smooths translation, roll and scale together,
        # in one unit (face widths per second).
        self._handles = np.array([self.centre, self.centre + (self.face_size, 0.0)])
        self._head_filter = LandmarkSmoother(POSE_MIN_CUTOFF, POSE_BETA, jitter_speed=POSE_JITTER_SPEED)
        self._shape_filter = LandmarkSmoother()
        self._raw_handles: np.ndarray | None = None
        self._canon: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the operator's resting face and position (after a long loss: they may sit elsewhere)."""
        self._neutral = self._pose = self._t = None
        self._raw_handles = self._canon = None
        self._head_filter.reset()
        self._shape_filter.reset()

    def _head(self, a: np.ndarray, tr: np.ndarray, t: float, op_size: float) -> tuple[np.ndarray, float, bool]:
        """Smoothed head pose (log size, roll, centre x, centre y) in operator pixels, the persona pixels per
        operator pixel, and whether the head jumped since the last frame, from the similarity (a, tr) that
        maps the operator onto the persona."""
        handles = (self._handles - tr) @ inverse2(a).T  # where the operator's head puts them
        jumped = False
        if self._raw_handles is not None:
            step = float(np.linalg.norm(handles - self._raw_handles, axis=1).max())
            jumped = step > JUMP * max(op_size, 1.0)
        self._raw_handles = handles
        h0, h1 = self._head_filter(handles, t, op_size).astype(np.float64)
        v = h1 - h0
        size = max(float(np.linalg.norm(v)), 1e-6)  # operator px per persona face width
        return np.array([math.log(size), math.atan2(v[1], v[0]), h0[0], h0[1]]), self.face_size / size, jumped

    def __call__(self, operator: np.ndarray, t: float) -> tuple[np.ndarray, Pose]:
        """(target points (468, 2) in persona-photo pixels, head pose) for the operator's mesh at time t."""
        op = np.asarray(operator, np.float64)[:468]
        a, tr = similarity(op[RIGID], self._persona[RIGID])
        canon = op @ a.T + tr
        pose, scale, jumped = self._head(a, tr, t, face_width(op[self._oval]))
        if jumped and self._canon is not None:
            canon = self._canon  # the tracker's mesh right after a jump of the head is distorted: skip it
        self._canon = canon
        # Smoothed here, in the persona's frame with the head's motion taken out: smoothing the operator's
        # points themselves would bend the face's shape while the head moves (each point's own speed sets
        # its own smoothing), and that bend would show as a grimace.
        canon = self._shape_filter(canon, t, self.face_size).astype(np.float64)

        dt = 0.0 if self._t is None else float(np.clip(t - self._t, 0.0, 0.5))
        self._t = t
        if self._neutral is None or self._pose is None:
            self._neutral, self._pose, self._seen = canon.copy(), pose.copy(), 1
        else:
            # A quick running mean over the first half second, then a slow one: the first frames (found by
            # the detector, then tracked while the tracker's crop settles) give a biased resting face that a
            # slow mean would take seconds to forget, showing as a squint or a smirk meanwhile.
            self._seen += 1
            warm = WARM_RATE if self._seen <= WARM_FRAMES else 0.0
            rate = max(1.0 - math.exp(-dt / NEUTRAL_SHAPE_S), warm)
            if not _resting(canon, self._neutral, self.face_size):
                rate *= BUSY_RATE  # talking or blinking: not the resting face
            self._neutral += rate * (canon - self._neutral)
            # The pose needs no quick start: the tracker's first frames place the head well enough.
            self._pose += (1.0 - math.exp(-dt / NEUTRAL_POSE_S)) * (pose - self._pose)

        delta = canon - self._neutral
        limit = MAX_DELTA * self.face_size
        norm = np.linalg.norm(delta, axis=1, keepdims=True)
        delta *= np.minimum(1.0, limit / np.maximum(norm, 1e-9))
        target = self._persona + delta
        for pairs in (RIGHT_EYE, LEFT_EYE):
            self._blink(target, canon, pairs)
        _keep_gaps(target, self.down)
        return target, self._relative_pose(pose, scale)

    def _blink(self, target: np.ndarray, canon: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> None:
        """Set, in place, the persona's lid gap for one eye from the operator's relative lid gap."""
        assert self._neutral is not None
        up, lo = _rows(pairs)
        mid = slice(2, 5)  # the three pairs over the iris: the corners barely open
        gap_now = float(_norms(canon[lo[mid]] - canon[up[mid]]).mean())
        gap_rest = float(_norms(self._neutral[lo[mid]] - self._neutral[up[mid]]).mean())
        closing = 1.0 - gap_now / max(gap_rest, 1e-6)
        if closing <= 0.0:
            return  # wide eyes: the additive delta already shows them
        closure = float(np.clip((closing - BLINK_DEADZONE) / (EYE_FULL_CLOSE - BLINK_DEADZONE), 0.0, 1.0))
        wanted = (1.0 - closure) * (self._persona[lo] - self._persona[up])
        change = wanted - (target[lo] - target[up])
        target[up] -= UPPER_LID_SHARE * change
        target[lo] += (1.0 - UPPER_LID_SHARE) * change

    def _relative_pose(self, pose: np.ndarray, scale: float) -> Pose:
        """The operator's head motion since the neutral pose, damped and clamped, for the persona photo."""
        assert self._pose is not None
        d_log_s = float(np.clip(POSE_GAIN * (pose[0] - self._pose[0]), -MAX_SCALE, MAX_SCALE))
        roll = float(np.clip(POSE_GAIN * (pose[1] - self._pose[1]), -math.radians(MAX_ROLL_DEG),
                             math.radians(MAX_ROLL_DEG)))
        shift = POSE_GAIN * (pose[2:] - self._pose[2:]) * scale  # operator px -> persona px
        limit = MAX_SHIFT * self.face_size
        shift *= min(1.0, limit / max(float(np.linalg.norm(shift)), 1e-9))
        c, s = math.cos(roll), math.sin(roll)
        m = math.exp(d_log_s) * np.array([[c, -s], [s, c]])
        return Pose(m, self.centre.copy(), shift)


def mesh_openness(points: np.ndarray) -> float:
    """How open the mouth is in a face mesh (inner-lip gap over mouth width)."""
    return mouth_openness(points[LIP_UPPER], points[LIP_LOWER], points[MOUTH_LEFT], points[MOUTH_RIGHT])


def _rows(pairs: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) mesh indices of a set of pairs, built once: this runs several times a frame."""
    rows = _ROWS.get(pairs)
    if rows is None:
        rows = _ROWS[pairs] = (np.array([u for u, _ in pairs]), np.array([l for _, l in pairs]))
    return rows


_ROWS: dict[tuple[tuple[int, int], ...], tuple[np.ndarray, np.ndarray]] = {}
_MID_LIDS = RIGHT_EYE[2:5] + LEFT_EYE[2:5]


def _norms(v: np.ndarray) -> np.ndarray:
    """Row lengths of `v` (N, 2), as np.linalg.norm(v, axis=1) computes them, without its wrapper's cost."""
    return np.sqrt((v * v).sum(axis=1))


def _lid_gap(points: np.ndarray) -> float:
    up, lo = _rows(_MID_LIDS)
    return float(_norms(points[lo] - points[up]).mean())


def _resting(shape: np.ndarray, neutral: np.ndarray, size: float) -> bool:
    """Whether `shape` may teach the resting face: mouth no opener, lids no closer than at rest, and no
    point far from its resting place (raised brows, a smile, a turned head)."""
    return (mesh_openness(shape) <= mesh_openness(neutral) + SPEAKING_OPENNESS
            and _lid_gap(shape) >= BLINKING * _lid_gap(neutral)
            and float(np.abs(shape - neutral).max()) <= REST_DEVIATION * size)


def _keep_gaps(points: np.ndarray, down: np.ndarray) -> None:
    """Push apart, in place, lids and lips that the deltas would cross (upper below lower): a fold."""
    for pairs, min_gap in ((RIGHT_EYE, MIN_EYE_GAP), (LEFT_EYE, MIN_EYE_GAP), (INNER_LIPS, 0.0)):
        up, lo = _rows(pairs)
        gap = (points[lo] - points[up]) @ down
        short = np.maximum(min_gap - gap, 0.0)
        if short.any():
            points[up] -= (short / 2)[:, None] * down
            points[lo] += (short / 2)[:, None] * down
