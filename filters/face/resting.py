"""The operator's resting face as the tracker sees it at each head pose.

A swap carries the operator's expression onto the persona as his mesh minus his resting mesh. A head is
rigid, but the tracker's mesh of a resting face is not: it bends a little as the head turns and nods, and
a resting mesh learnt only from the front turns that bend into "expression", which carries the shape of
his features into hers (on the likeness benchmark's 72 pairs the turned frames were her face's furthest).
So the resting mesh is learnt as a function of the pose: rest(yaw, pitch) = W . [1, yaw, pitch, yaw^2],
fitted by exponentially forgetting least squares over the frames the swap sees, at every pose. A smile or
a raised brow is still a move away from the rest at that pose; what changes with the pose alone is not.

Where recent frames do not teach a pose term (the head has not turned yet, or not for a long while), a
ridge eases it back to nothing, that is to the rest the front teaches; poses past the largest turn and nod
seen so far are read at that turn: nothing is extrapolated. Measured (bench_likeness, 72 pairs, 40 frames,
the swap drawing its lighter mesh): median dlib distance to her 0.472 with a rest learnt from the front
only, 0.458 with this one, 0.440 carrying no expression at all.
"""

from __future__ import annotations

import numpy as np

POSE_SCALE = 30.0  # degrees: the pose features are angle / POSE_SCALE (about 1 at a clear turn)
# How firmly the pose terms are held to nothing: as if a spread of about 7 degrees (0.05 = (7/30)^2) of
# resting frames at the front had been seen. Weaker, a head held nearly still "taught" a slope from a degree
# or two of wobble, and a smile held while the head dipped 3 degrees was two thirds explained away as the
# rest at that pitch (tests/test_face_resting.py); real turns (tens of degrees) outweigh it many times.
RIDGE = 0.05
MAX_REACH = 60.0  # degrees: the turn and nod past which nothing is learnt or read (the tracker's limit)


class RestingFace:
    """The operator's resting mesh (N, 3, in the canonical frame) as learnt so far, read at any pose."""

    def __init__(self) -> None:
        self._w: np.ndarray | None = None  # (4, N * 3): the fitted terms
        self._s = np.zeros((4, 4))  # forgetting sums of x x^T and x y^T
        self._t: np.ndarray | None = None
        self._reach = np.zeros(2)  # the largest |yaw| and |pitch| seen (degrees)
        self._ridge = np.diag([0.0, RIDGE, RIDGE, RIDGE])  # never on the rest itself

    @property
    def learnt(self) -> bool:
        return self._w is not None

    def reset(self) -> None:
        """Forget it all (someone else may sit down)."""
        self.__init__()

    def at(self, yaw: float, pitch: float) -> np.ndarray:
        """The resting mesh at this pose (degrees); only once something was learnt."""
        if self._w is None:
            raise RuntimeError("nothing learnt yet")
        return np.einsum("i,ik->k", self._features(yaw, pitch), self._w).reshape(-1, 3)

    def learn(self, mesh: np.ndarray, yaw: float, pitch: float, rate: float) -> None:
        """Move toward `mesh` (the operator's pose-free mesh now) at `rate` (0..1 of the way a frame)."""
        y = np.asarray(mesh, np.float64).reshape(-1)
        if self._w is None:
            self._w = np.zeros((4, y.size))
            self._w[0] = y
            self._t = np.zeros((4, y.size))
        self._reach = np.minimum(np.maximum(self._reach, np.abs((yaw, pitch))), MAX_REACH)
        x = self._features(yaw, pitch)
        self._s += rate * (np.outer(x, x) - self._s)
        self._t += rate * (np.outer(x, y) - self._t)
        self._w = _solve(self._s + self._ridge, self._t)  # the ridge pulls the pose terms to 0

    def _features(self, yaw: float, pitch: float) -> np.ndarray:
        a, b = np.clip((yaw, pitch), -self._reach, self._reach) / POSE_SCALE
        return np.array([1.0, a, b, a * a])


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
