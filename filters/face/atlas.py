"""A persona's face as a pose-free texture (an atlas over the canonical face's unrolled surface).

Unwrapped once, when the swap is built (or a persona is made): each triangle of the persona's mesh is
copied from the photo to its place in the atlas, weighted by how squarely the photo sees it. What the
photo sees poorly or not at all (the far cheek of a three-quarter view, the side behind the nose) is
taken from the mirror image of the side it sees well, with a smooth weight between the two, so there is
no seam down the face. Several views (frames of a video) merge the same way: each texel comes from the
view that sees it best.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from filters.face.blend import blur_mask
from filters.face.face3d import canonical, facing, signed_areas, visible_order
from filters.face.warp import warp_face

ATLAS_PX = 320  # atlas pixels per face width: about the largest face a webcam frame shows
SHARPNESS = 4.0  # view weights are facing ** SHARPNESS: the squarer view wins clearly, still smoothly
WEIGHT_BLUR = 0.04  # face widths of blur on the weight maps: no visible seam where the source changes
MIRROR_SHARE = 0.5  # a mirrored texel counts this much against a directly seen one: her own side wins ties
KNOWN = 1e-8  # texels whose summed view weight is below this are seen too obliquely: neighbours fill them
MERGE_POWER = 8  # how sharply the best of several views wins a texel (on top of SHARPNESS)


@dataclass
class FaceAtlas:
    """`texture` (H, W, 3) BGR; `weight` (H, W) float32, how well the views saw each texel (facing **
    SHARPNESS, before the mirror fill); `points` (468, 2) float32, each mesh point's place in the texture."""

    texture: np.ndarray
    weight: np.ndarray
    points: np.ndarray

    def coverage(self, threshold: float = 0.3) -> tuple[float, float]:
        """Share of each half of the face (image-left, image-right as seen from the front) that some view
        saw at least `threshold` squarely (cosine), before mirroring: 1.0 means that side was seen well."""
        mask = _face_mask(self.texture.shape[:2], self.points)
        seen = (self.weight >= threshold ** SHARPNESS) & mask
        half = self.texture.shape[1] // 2
        left = seen[:, :half].sum() / max(mask[:, :half].sum(), 1)
        right = seen[:, half:].sum() / max(mask[:, half:].sum(), 1)
        return float(left), float(right)


def atlas_points(px: int = ATLAS_PX) -> tuple[np.ndarray, tuple[int, int]]:
    """Mesh points' atlas positions (468, 2) at `px` pixels per face width, and the atlas size (h, w).
    The atlas is symmetric: column c and column w - 1 - c are mirror images."""
    uv = canonical().uv
    half_w = float(np.abs(uv[:, 0]).max()) * 1.04
    top, bottom = float(uv[:, 1].min()), float(uv[:, 1].max())
    pad = 0.04 * (bottom - top)
    w = int(np.ceil(2 * half_w * px)) | 1
    h = int(np.ceil((bottom - top + 2 * pad) * px))
    pts = np.stack([uv[:, 0] * px + (w - 1) / 2, (uv[:, 1] - top + pad) * px], axis=1)
    return pts.astype(np.float32), (h, w)


def view(photo: np.ndarray, mesh: np.ndarray, px: int = ATLAS_PX) -> FaceAtlas:
    """One photo's contribution: its visible triangles copied into the atlas, with their view weights."""
    c = canonical()
    points, shape = atlas_points(px)
    order = visible_order(mesh, c.triangles, 0.0)
    texture, inside, box = warp_face(photo, np.asarray(mesh, np.float32)[:, :2], points, order, shape)
    full = np.zeros((*shape, 3), np.uint8)
    weight = np.zeros(shape, np.float32)
    x0, y0, x1, y1 = box
    full[y0:y1, x0:x1] = texture
    # Weight per triangle, rasterised like the texture: how squarely the photo sees it, times the share of it
    # that nothing nearer hides (the nose hides part of the far cheek in a turned photo).
    cos = np.clip(facing(mesh, order), 0.0, 1.0) ** SHARPNESS * _unhidden(mesh, order, photo.shape[:2])
    local = np.round(points * 16).astype(np.int32)
    for k, tri in enumerate(order):
        cv2.fillConvexPoly(weight, local[tri], float(cos[k]), cv2.LINE_8, shift=4)
    weight[np.pad(inside, ((y0, shape[0] - y1), (x0, shape[1] - x1))) == 0] = 0.0
    weight = blur_mask(weight, WEIGHT_BLUR * px)
    return FaceAtlas(full, weight, points)


def merge(views: list[FaceAtlas]) -> FaceAtlas:
    """Several views of one face as one atlas, mirror-filled: each texel mostly from the view that saw it
    (or its mirror partner) most squarely."""
    if not views:
        raise ValueError("no views to merge")
    # One photo: its own side against its mirror image, smoothly. Several views: the view that sees a texel
    # best gives it (a view 15 degrees less square counts a third as much), or views would blur each other.
    power = MERGE_POWER if len(views) > 1 else 2
    acc = np.zeros(views[0].texture.shape, np.float32)
    total = np.zeros(views[0].weight.shape, np.float32)
    seen = np.zeros_like(total)
    for v in views:
        for texture, weight in ((v.texture, v.weight), (v.texture[:, ::-1], v.weight[:, ::-1] * MIRROR_SHARE)):
            w = weight ** power
            acc += texture.astype(np.float32) * w[..., None]
            total += w
        seen = np.maximum(seen, v.weight)
    texture = acc / np.maximum(total, 1e-12)[..., None]
    texture = _fill_outside(texture, total > KNOWN)
    return FaceAtlas(np.clip(texture + 0.5, 0, 255).astype(np.uint8), seen, views[0].points)


def unwrap(photo: np.ndarray, mesh: np.ndarray, px: int = ATLAS_PX) -> FaceAtlas:
    """The persona's atlas from one photo and its 3-D mesh (468, 3, photo pixels with depth)."""
    return merge([view(photo, mesh, px)])


def _unhidden(mesh: np.ndarray, order: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per triangle (in painter's order), the share of its area in the photo that no nearer triangle covers."""
    pts = np.asarray(mesh, np.float64)[:, :2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    local = np.round((pts - (x0, y0)) * 16).astype(np.int32)
    for k, tri in enumerate(order):
        cv2.fillConvexPoly(ids, local[tri], k, cv2.LINE_8, shift=4)
    owned = np.bincount(ids[ids >= 0], minlength=len(order)).astype(np.float64)
    area = np.abs(signed_areas(pts, order)) / 2
    # Tiny triangles own a pixel or none by chance: judge them as seen unless clearly covered.
    return np.clip(np.where(area < 4.0, 1.0, owned / np.maximum(area, 1e-9)), 0.0, 1.0)


def _fill_outside(texture: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Texels no view covers take the colour of covered ones nearby (normalised blur), so bilinear sampling
    at the edge of the face never mixes in black."""
    out = texture.copy()
    mask = known.astype(np.float32)
    filled = texture * mask[..., None]
    for sigma in (2.0, 6.0, 18.0):
        num = blur_mask(filled, sigma)
        den = blur_mask(mask, sigma)
        take = (mask == 0) & (den > 1e-4)
        out[take] = num[take] / den[take, None]
        mask = np.where(take, 1.0, mask).astype(np.float32)
        filled = out * mask[..., None]
    return out


def _face_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    c = canonical()
    mask = np.zeros(shape, np.uint8)
    local = np.round(points * 16).astype(np.int32)
    for tri in c.triangles:
        cv2.fillConvexPoly(mask, local[tri], 1, cv2.LINE_8, shift=4)
    return mask > 0
