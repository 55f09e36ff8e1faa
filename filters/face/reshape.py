"""Moving the operator's face geometry toward the persona's, while keeping the operator's expression.

A warp-only swap puts the persona's skin on the operator's proportions (eye spacing, nose length, jaw),
and proportions carry much of what makes a face recognisable. Here each frame's target landmarks are
    T = O + strength * (P - N),
mapped into the operator's pose: O the operator's points, P the persona's, N the operator's own neutral
shape (a slow running mean of their aligned points). P - N is identity only, so the operator's blinks,
smiles and speech (O - N) stay in T. The operator's head outline is then liquified from O to T with
a ring of fixed anchors around it, so no part of their own jaw or cheek shows beside the persona's face.
"""

from __future__ import annotations

import numpy as np

from filters.face.warp import triangulate

RING_SCALE = 1.45  # anchors sit this far out from the face centre, relative to the face outline
NEUTRAL_SECONDS = 4.0  # the operator's neutral shape follows over about this long


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (scale, rotation, translation) mapping src points onto dst: returns (A 2x2, t)."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    flip = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[1, 1] = -1
    rot = u @ flip @ vt
    scale = float(np.trace(np.diag(sig) @ flip) / max(float((s ** 2).sum() / len(src)), 1e-9))
    a = scale * rot
    return a, md - ms @ a.T


def inverse2(a: np.ndarray) -> np.ndarray:
    """Inverse of a 2x2 matrix, written out: np.linalg.inv costs tens of microseconds of call overhead,
    and far more when its BLAS threads contend with the rest of the pipeline for the cores."""
    (p, q), (r, s) = a
    det = p * s - q * r
    return np.array([[s, -q], [-r, p]]) / det


def ring(points: np.ndarray, outline: np.ndarray, scale: float = RING_SCALE) -> np.ndarray:
    """Anchor points: the face outline pushed out from its centre by `scale`."""
    pts = points[outline]
    centre = pts.mean(axis=0)
    return (centre + (pts - centre) * scale).astype(np.float32)


class ShapeTransfer:
    """Per-frame target landmarks with the persona's proportions and the operator's expression."""

    def __init__(self, persona_points: np.ndarray, subset: np.ndarray, outline: np.ndarray,
                 strength: float = 0.8, fps: float = 30.0) -> None:
        self._persona = np.asarray(persona_points, np.float64)
        self._subset = subset
        self._outline = outline
        self.strength = strength
        self._rate = 1.0 / max(NEUTRAL_SECONDS * fps, 1.0)
        self._neutral: np.ndarray | None = None
        canon = np.concatenate([self._persona[subset], ring(self._persona, outline)])
        self.liquify_triangles = triangulate(canon)

    def reset(self) -> None:
        """Forget the operator's neutral shape (a new operator, or the face was lost for long)."""
        self._neutral = None

    def target(self, operator: np.ndarray, strength: float | None = None, learn: bool = True) -> np.ndarray:
        """Target points (same layout as `operator`) for the persona's face in this frame.

        `strength` overrides the instance's for this frame (a turned head takes less); with `learn` False
        the frame does not update the neutral shape (a turned head's 2-D shape is not its resting shape).
        """
        op = np.asarray(operator, np.float64)
        a, t = similarity(op, self._persona)
        canon = op @ a.T + t  # the operator's shape in the persona photo's frame
        if self._neutral is None:
            self._neutral = canon.copy()
        elif learn:
            self._neutral += self._rate * (canon - self._neutral)
        offset = (self._persona - self._neutral) @ inverse2(a).T  # back into the operator's frame
        return (op + (self.strength if strength is None else strength) * offset).astype(np.float32)

    def liquify_points(self, operator: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) control points that move the operator's head outline from `operator` to `target`."""
        anchors = ring(np.asarray(operator, np.float32), self._outline)
        src = np.concatenate([operator[self._subset], anchors])
        dst = np.concatenate([target[self._subset], anchors])
        return src.astype(np.float32), dst.astype(np.float32)
