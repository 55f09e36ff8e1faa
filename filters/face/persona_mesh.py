"""The persona photo's face mesh as the mesh-based face modes use it: found once, checked, triangulated.

Shared by the swap and portrait modes (and any later mesh backend), so neither imports the other.
"""

from __future__ import annotations

import numpy as np

from engine.errors import PersonaError
from engine.face_contract import NO_FACE_MESSAGE, check_photo
from filters.face.animate import LIP_LOWER, LIP_UPPER, MOUTH_LEFT, MOUTH_RIGHT
from filters.face.blend import face_width
from filters.face.landmarks import N_MESH_POINTS, FaceMesher, face_down, face_oval_indices, feature_indices

MIN_FACE_PX = 100
# Warp control points: the feature contours and nose, plus this many more spread over cheeks and forehead.
# About 190 of the 468 mesh points give a third of the triangles (the warp's per-triangle cost) with the
# same outline, eyes, brows, nose and lips.
EXTRA_WARP_POINTS = 40


def warp_point_subset(points: np.ndarray, extra: int) -> np.ndarray:
    """Mesh indices to warp with: every feature-contour and nose point, plus `extra` interior points.

    The extra points are picked by farthest-point sampling on the persona's mesh so they cover the
    cheeks and forehead evenly, keeping the skin's shape while cutting the triangle count.
    """
    chosen = [int(i) for i in np.union1d(feature_indices("contours"), feature_indices("nose"))]
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
    photo = check_photo(persona_photo)
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
