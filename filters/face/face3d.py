"""The 3-D face: head pose, identity shape and expression apart, and a face rendered with visibility.

MediaPipe's mesh gives x, y and a relative depth z for each of 468 points. A similarity in 3-D (scale,
rotation, translation: the camera is far enough for orthographic projection at webcam distance) fitted on
points that expressions barely move maps evercall's canonical face (canonical.py) onto a mesh: that is
the head pose. Undoing it gives the face in a pose-free frame, where one person's mesh minus their
resting mesh is their expression, and one person's resting mesh minus another's is the identity
difference. Anything put in that frame can be put back at any pose.

Texture lives in a pose-free atlas too: the canonical face unrolled onto a vertical cylinder (u: the angle
around the head times its radius, v: height), wide enough for both cheeks at any turn the mesh tracks.
The canonical face is symmetric and so is the atlas: mirroring it left-right maps each point onto its
mirror partner, which is how the side of the face a photo does not show is filled from the side it does.

Rendering draws only the triangles that face the camera, far ones first, so a turned head shows its near
side and the nose hides the far cheek, as a real head does; nothing is stretched into a sliver.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from filters.face.animate import RIGID
from filters.face.landmarks import N_MESH_POINTS, face_oval_indices, lips_inner_indices
from filters.face.warp import triangulate, warp_face

CANONICAL_FILE = Path(__file__).with_name("canonical_face.npz")
# More rigid points than the 2-D portrait uses: the brow ridge and the upper nose steady the pitch.
POSE_POINTS = np.unique(np.concatenate([RIGID, [107, 336, 66, 296, 105, 334, 193, 417, 122, 351, 245, 465,
                                                  6, 197, 48, 278, 50, 280, 36, 266]])).astype(np.int32)
CYLINDER_MARGIN = 0.1  # the unrolling axis sits this far (face widths) behind the deepest point
RENDER_EXTRA = 60  # points beyond the feature contours in the lighter mesh (fewer triangles, faster)
MIN_FACING = 0.05  # triangles seen more edge-on than this (cosine) are not drawn


@dataclass(frozen=True)
class Canonical:
    """The canonical face: `points` (468, 3) frontal and symmetric, face width 1; `mirror` (468,) each point's
    partner; `uv` (468, 2) its unrolled atlas position (face widths; u = 0 on the midline); `triangles`
    (T, 3) over the whole mesh, oriented counter-clockwise as seen from the front (positive signed area in
    image coordinates), the lips' triangles chosen on an opened mouth so none bridges the lip line;
    `coarse` the same over the feature contours and RENDER_EXTRA more points: a lighter mesh that loses
    some likeness (the swap draws the whole one; the likeness benchmark's operator clips keep this one,
    so its figures stay comparable across rounds)."""

    points: np.ndarray
    mirror: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    coarse: np.ndarray


@functools.lru_cache(maxsize=1)
def canonical() -> Canonical:
    from filters.face.persona_mesh import opened_mouth, warp_point_subset

    data = np.load(CANONICAL_FILE)
    points, mirror = data["points"].astype(np.float64), data["mirror"].astype(np.int32)
    oval = points[face_oval_indices()]
    axis_z = float(points[:, 2].max()) + CYLINDER_MARGIN
    radius = float(np.mean(np.hypot(oval[:, 0], axis_z - oval[:, 2])))
    uv = np.stack([radius * np.arctan2(points[:, 0], axis_z - points[:, 2]), points[:, 1]], axis=1)
    uv = (uv + uv[mirror] * (-1.0, 1.0)) / 2  # exactly symmetric: mirroring the atlas maps partners
    opened = opened_mouth(uv.astype(np.float32), np.array(lips_inner_indices(), dtype=np.int32))
    chosen = warp_point_subset(uv, RENDER_EXTRA)
    coarse = np.unique(np.concatenate([chosen, mirror[chosen]]))  # symmetric, like the atlas
    return Canonical(points, mirror, uv, _mesh_triangles(uv, opened, np.arange(len(uv))),
                     _mesh_triangles(uv, opened, coarse))


def _mesh_triangles(uv: np.ndarray, opened: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Triangles (as mesh indices) over `subset`, chosen on the opened mouth, inside the face outline,
    oriented counter-clockwise in the unrolled frontal view."""
    tris = subset[triangulate(opened[subset])]
    # Delaunay fills the convex hull: drop triangles outside the face outline (hollows at the temples).
    outline = np.round(uv[face_oval_indices()] * 1000).astype(np.int32)
    centres = uv[tris].mean(axis=1) * 1000
    inside = np.array([cv2.pointPolygonTest(outline, (float(x), float(y)), False) >= 0 for x, y in centres])
    tris = tris[inside]
    return np.where((signed_areas(uv, tris) < 0)[:, None], tris[:, [0, 2, 1]], tris).astype(np.int32)


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle of 2-D `points` (positive: counter-clockwise, y down)."""
    p = np.asarray(points, np.float64)[triangles]
    a, b = p[:, 1, :2] - p[:, 0, :2], p[:, 2, :2] - p[:, 0, :2]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


@dataclass(frozen=True)
class Pose:
    """points ~ scale * canonical @ rot.T + shift (3-D, image pixels with depth)."""

    scale: float
    rot: np.ndarray  # 3x3
    shift: np.ndarray  # (3,)

    def apply(self, shape: np.ndarray) -> np.ndarray:
        """A shape in the canonical frame placed at this pose: (N, 3) pixels with depth."""
        return self.scale * np.asarray(shape, np.float64) @ self.rot.T + self.shift

    def undo(self, points: np.ndarray) -> np.ndarray:
        """A posed mesh back in the canonical frame."""
        return (np.asarray(points, np.float64) - self.shift) @ self.rot / self.scale

    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees; yaw positive when the face turns toward the image's right."""
        r = self.rot
        yaw = float(np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))))
        pitch = float(np.degrees(np.arctan2(r[2, 1], r[2, 2])))
        roll = float(np.degrees(np.arctan2(r[1, 0], r[0, 0])))
        return yaw, pitch, roll

    def turned(self, yaw: float = 0.0, pitch: float = 0.0) -> "Pose":
        """This pose with the head turned a further `yaw` and nodded `pitch` degrees (about its own axes)."""
        return Pose(self.scale, self.rot @ rotation(yaw, pitch), self.shift)


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation (3x3) of the canonical face by yaw (about y), pitch (about x) and roll (about z), degrees."""
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def fit_pose(points: np.ndarray, reference: np.ndarray | None = None,
             index: np.ndarray = POSE_POINTS) -> Pose:
    """The similarity that maps `reference` (canonical by default) onto the mesh `points` (N, 3), least
    squares over `index` (Umeyama's closed form)."""
    ref = canonical().points if reference is None else np.asarray(reference, np.float64)
    x, y = ref[index], np.asarray(points, np.float64)[index]
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    u, sig, vt = np.linalg.svd(yc.T @ xc / len(x))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / max(float((xc ** 2).sum() / len(x)), 1e-12))
    return Pose(scale, rot, my - scale * mx @ rot.T)


def facing(points: np.ndarray, triangles: np.ndarray, sideways: bool = False) -> np.ndarray:
    """Cosine between each triangle's normal and the direction to the camera, for a posed mesh (N, 3)
    whose triangles are oriented as the canonical's: 1 facing the camera, 0 edge-on, below 0 turned away.
    With `sideways`, only the normal's left-right lean counts (the underside of the chin, which faces down,
    is not crowded sideways the way the far cheek of a turned head is)."""
    p = np.asarray(points, np.float64)[triangles]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    norm = np.hypot(n[:, 0], n[:, 2]) if sideways else np.linalg.norm(n, axis=1)
    return n[:, 2] / np.maximum(norm, 1e-9)


def visible_order(points: np.ndarray, triangles: np.ndarray, min_facing: float = MIN_FACING) -> np.ndarray:
    """The triangles of a posed mesh that face the camera, far ones first (painter's order)."""
    keep = facing(points, triangles) > min_facing
    tris = triangles[keep]
    depth = np.asarray(points, np.float64)[tris, 2].mean(axis=1)
    return tris[np.argsort(-depth, kind="stable")]


def render(texture: np.ndarray, tex_points: np.ndarray, points: np.ndarray, triangles: np.ndarray,
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The textured mesh drawn at `points` (N, 3, posed) in a frame of `shape` (h, w): (patch, mask, box)
    as warp_face gives them. Only triangles facing the camera are drawn, far ones first."""
    order = visible_order(points, triangles)
    if len(order) == 0:
        return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), (0, 0, 0, 0)
    return warp_face(texture, tex_points, np.asarray(points, np.float32)[:, :2], order, shape)


def mesh3d(found: np.ndarray) -> np.ndarray:
    """The 468 face points (without the iris points) of a depth mesher's result, float64."""
    return np.asarray(found, np.float64)[:N_MESH_POINTS]


def symmetrised(shape: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A canonical-frame shape (468, 3) whose poorly seen points (low `weight`, 0..1 per point) are taken
    from their mirror partners instead: faces are nearly symmetric, and a photo shows one side better."""
    mirror = canonical().mirror
    reflected = shape[mirror] * (-1.0, 1.0, 1.0)
    w_own, w_mirror = weight + 1e-3, weight[mirror] + 1e-3
    return (shape * w_own[:, None] + reflected * w_mirror[:, None]) / (w_own + w_mirror)[:, None]


def point_facing(points: np.ndarray, sideways: bool = False, triangles: np.ndarray | None = None) -> np.ndarray:
    """Per point, the mean facing (cosine to the camera) of the triangles around it, clipped to 0..1.
    `triangles`, a subset of the canonical ones (in their order), gives the same figure for the points
    all of whose triangles it holds, for less work (0 for points it does not touch)."""
    c = canonical()
    tris = c.triangles if triangles is None else triangles
    f = np.clip(facing(points, tris, sideways), 0.0, 1.0)
    corners = tris.ravel()
    total = np.bincount(corners, np.repeat(f, 3), minlength=len(c.points))
    count = np.bincount(corners, minlength=len(c.points))
    return total / np.maximum(count, 1)
