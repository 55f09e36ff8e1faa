"""The operator's resting face as the tracker sees it at each head pose.

A swap carries the operator's expression onto the persona as his mesh minus his resting mesh. A head is
rigid, but the tracker's mesh of a resting face is not: it bends a little as the head turns and nods, and
a resting mesh learnt only from the front turns that bend into "expression", which carries the shape of
his features into hers (on the likeness benchmark's 72 pairs the turned frames were her face's furthest).

So the resting mesh is learnt as a function of the pose, rest(yaw, pitch) = W . [1, yaw, pitch, yaw^2],
by least squares over the frames the swap sees, at every pose, forgetting over about NEUTRAL_SECONDS. A
smile or a raised brow is still a move away from the rest at that pose; what changes with the pose alone
is not. The forgetting is directional: a frame only wears out what was learnt about poses like its own, so
a turn held for a minute (a side monitor) does not wear out the front. A ridge holds the pose terms to
nothing until real turns teach them, and poses outside the turns and nods seen so far (each way) are read
at their edge: the side he has not turned to yet gets no extrapolated bend.

`front` is the plain frontal rest, learnt from near-frontal frames only, as the rest used to be: his
outline follows from it (his silhouette as the camera sees it, bend and all). Measured (bench_likeness, 72
pairs, 40 frames, the swap drawing its lighter mesh): median dlib distance to her 0.472 with the frontal
rest alone, 0.455 with this one, 0.440 carrying no expression at all.
"""

from __future__ import annotations

import numpy as np

POSE_SCALE = 30.0  # degrees: the pose features are angle / POSE_SCALE (about 1 at a clear turn)
FRONT_YAW = 15.0  # degrees: only a head this close to frontal teaches `front`
NEUTRAL_SECONDS = 4.0  # what is learnt follows over about this long (at FPS frames a second)...
FPS = 30.0
WARM_FRAMES = 10  # ...but over the first frames quickly (the tracker's first meshes settle)
WARM_RATE = 0.3
BUSY_SHARE = 0.1  # a frame the caller calls busy (a talking mouth) teaches this much of what another would
# How firmly the pose terms are held to nothing: as if resting frames spread about 7 degrees (0.05 = (7/30)^2)
# of turn or nod at the front had been seen (about 14 degrees for the yaw^2 term). Weaker, a head held nearly
# still "taught" a bend from a degree or two of wobble, and a smile held while the head dipped 3 degrees was
# two thirds explained away as the rest at that pitch (tests/test_face_resting.py); real turns (tens of
# degrees) outweigh it many times.
RIDGE = 0.05
_RIDGE = np.diag([0.0, RIDGE, RIDGE, RIDGE])  # on the pose terms, never on the rest itself


class RestingFace:
    """The operator's resting mesh (N, 3, in the canonical frame) as learnt so far, read at any pose."""

    def __init__(self) -> None:
        self.front: np.ndarray | None = None  # the frontal rest (N, 3)
        self._w: np.ndarray | None = None  # (4, N * 3): the fitted terms
        self._s = np.zeros((4, 4))  # the sums of x x^T and x y^T, forgotten along each new frame's x
        self._t: np.ndarray | None = None
        self._seen = np.zeros((2, 2))  # [[yaw lo, yaw hi], [pitch lo, pitch hi]] seen (degrees)
        self._fit_frames = 0  # frames that taught the fit
        self._front_frames = 0  # and `front`

    @property
    def learnt(self) -> bool:
        return self.front is not None  # set with the fit, on the first usable frame

    def at(self, yaw: float, pitch: float) -> np.ndarray:
        """The resting mesh at this pose (degrees); only once something was learnt."""
        if not self.learnt:
            raise RuntimeError("nothing learnt yet")
        assert self._w is not None and self.front is not None
        return np.einsum("i,ik->k", self._features(yaw, pitch), self._w).reshape(self.front.shape)

    def learn(self, mesh: np.ndarray, yaw: float, pitch: float, busy: bool = False) -> None:
        """Learn from `mesh` (the operator's pose-free mesh now, at this pose in degrees); a `busy` frame (a
        talking mouth) teaches little, and a frame with no finite pose or mesh nothing."""
        mesh = np.asarray(mesh, np.float64)
        if not (np.isfinite(yaw) and np.isfinite(pitch) and np.isfinite(mesh).all()):
            return
        y = mesh.reshape(-1)
        if not self.learnt:
            self.front = mesh.copy()
            self._w = np.zeros((4, y.size))
            self._w[0] = y
            self._t = np.zeros((4, y.size))
            self._seen[:] = ((yaw, yaw), (pitch, pitch))
        assert self._w is not None and self._t is not None and self.front is not None
        if abs(yaw) <= FRONT_YAW:
            self._front_frames += 1
            self.front += _rate(self._front_frames, busy) * (mesh - self.front)
        self._seen[:, 0] = np.minimum(self._seen[:, 0], (yaw, pitch))
        self._seen[:, 1] = np.maximum(self._seen[:, 1], (yaw, pitch))
        x = self._features(yaw, pitch)
        self._fit_frames += 1
        rate = _rate(self._fit_frames, busy)
        # Forget along x only: take `rate` of what S holds in x's direction out of S and T, leaving the
        # current estimate the solution of what remains; then add this frame at `rate`.
        sx = np.einsum("ij,j->i", self._s, x)
        q = float(x @ sx)
        if q > 1e-12:
            self._s -= rate / q * np.outer(sx, sx)
            self._t -= rate / q * np.outer(sx, np.einsum("i,ik->k", sx, self._w))
        self._s += rate * np.outer(x, x)
        self._t += rate * np.outer(x, y)
        self._w = _solve(self._s + _RIDGE, self._t)

    def _features(self, yaw: float, pitch: float) -> np.ndarray:
        a, b = np.clip((yaw, pitch), self._seen[:, 0], self._seen[:, 1]) / POSE_SCALE
        return np.array([1.0, a, b, a * a])


def _rate(frames: int, busy: bool) -> float:
    """How far the `frames`-th frame that teaches a part moves it: quickly over its first frames, then over
    about NEUTRAL_SECONDS."""
    rate = WARM_RATE if frames <= WARM_FRAMES else 1.0 / (NEUTRAL_SECONDS * FPS)
    return rate * (BUSY_SHARE if busy else 1.0)


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a @ x = b, for a small symmetric positive definite `a`, by elimination in numpy's own loops:
    LAPACK, even on a 4x4, wakes the BLAS threads, which then spin on and doubled the swap's CPU time."""
    n = len(a)
    m = np.concatenate([a, b], axis=1)
    for k in range(n):
        m[k] /= m[k, k]
        others = np.arange(n) != k
        m[others] -= np.outer(m[others, k], m[k])
    return m[:, n:]
