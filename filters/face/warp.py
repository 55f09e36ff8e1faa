"""Piecewise-affine warping of one face onto another's landmark layout.

Each triangle of the source mesh gets its own affine map. Instead of one `warpAffine` per triangle, the
triangles are rasterised once into an index image over the target's bounding box and a single dense
`cv2.remap` does the pixel work: a few milliseconds for a 640x480 frame.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) of the given 2-D points, as indices into them."""
    return Delaunay(np.asarray(points, dtype=np.float64)).simplices.astype(np.int32)


def _affines(dst_pts: np.ndarray, src_pts: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle 3x2 matrices M with src = [x, y, 1] @ M for (x, y) in the target triangle.

    Returns (matrices, ok) where ok marks triangles that are not degenerate in the target.
    """
    d = dst_pts[triangles].astype(np.float64)  # (T, 3, 2)
    s = src_pts[triangles].astype(np.float64)
    # With edge vectors D (target) and S (source) from vertex 0: (x - d0) @ L = src - s0, so L = D^-1 S.
    # The 2x2 inverse is written out: np.linalg.solve on hundreds of tiny systems costs over a millisecond.
    dv = d[:, 1:] - d[:, :1]  # (T, 2, 2)
    sv = s[:, 1:] - s[:, :1]
    det = dv[:, 0, 0] * dv[:, 1, 1] - dv[:, 0, 1] * dv[:, 1, 0]
    ok = np.abs(det) > 1e-3
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    inv = np.empty_like(dv)
    inv[:, 0, 0], inv[:, 0, 1] = dv[:, 1, 1] * inv_det, -dv[:, 0, 1] * inv_det
    inv[:, 1, 0], inv[:, 1, 1] = -dv[:, 1, 0] * inv_det, dv[:, 0, 0] * inv_det
    lin = inv @ sv  # (T, 2, 2)
    mats = np.empty((len(triangles), 3, 2))
    mats[:, :2] = lin
    mats[:, 2] = s[:, 0] - np.einsum("ti,tij->tj", d[:, 0], lin)
    return mats, ok


def _fill_ids(ids: np.ndarray, local: np.ndarray, triangles: np.ndarray, ok: np.ndarray) -> None:
    """Rasterise each `ok` triangle's index into `ids`, later ones over earlier (`local`: points in 4-bit
    fixed point). The corners are gathered once for all triangles: per-call indexing in the loop cost as
    much as the filling itself (hundreds of triangles a frame)."""
    idx = np.flatnonzero(ok)
    fill = cv2.fillConvexPoly
    for t, poly in zip(idx.tolist(), local[triangles[idx]]):
        fill(ids, poly, t, cv2.LINE_8, 4)


def _coefficients(mats: np.ndarray, outside: tuple[float, ...]) -> np.ndarray:
    """The affines as a (6, T + 1) float32 table, one row per coefficient, with `outside` as the last
    column (what pixels no triangle covers get): gathering each row by the id image gives contiguous
    planes, where one (H, W, 6) gather would make every later multiply-add stride over six floats."""
    n = len(mats)
    coef = np.empty((6, n + 1), np.float32)
    coef[:, :n] = mats.reshape(n, 6).T
    coef[:, n] = outside
    return coef


def _maps(coef: np.ndarray, ids: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel source coordinates: x = gx * c0 + gy * c2 + c4, y = gx * c1 + gy * c3 + c5, with each
    pixel's coefficients looked up by its triangle id: one lookup of all six planes (fancy indexing per
    plane cost half as much again), and the arithmetic in place in them (the same operations, in the same
    order, as the expressions above)."""
    c0, c1, c2, c3, c4, c5 = np.take(coef, ids, axis=1)
    c0 *= gx
    c2 *= gy
    c0 += c2
    c0 += c4
    c1 *= gx
    c3 *= gy
    c1 += c3
    c1 += c5
    return c0, c1


def warp_face(
    src_image: np.ndarray,
    src_pts: np.ndarray,
    dst_pts: np.ndarray,
    triangles: np.ndarray,
    dst_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Warp `src_image` so its landmarks `src_pts` land on `dst_pts` in an image of `dst_shape` (h, w).

    Returns (patch, mask, box): the warped pixels and a uint8 mask (255 inside the mesh) for the target
    region box = (x0, y0, x1, y1); outside the box nothing is touched, which keeps the cost per face.
    """
    h, w = dst_shape
    used = dst_pts[triangles.ravel()]  # the box of the points in use (np.unique would sort them first)
    x0, y0 = np.floor(used.min(axis=0)).astype(int)
    x1, y1 = np.ceil(used.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        empty = np.zeros((0, 0), np.uint8)
        return np.zeros((0, 0, 3), np.uint8), empty, (0, 0, 0, 0)

    mats, ok = _affines(dst_pts, src_pts, triangles)
    n = len(triangles)
    ids = np.full((y1 - y0, x1 - x0), n, dtype=np.int32)
    local = np.round((dst_pts - (x0, y0)) * 16).astype(np.int32)  # 4 fractional bits for fillConvexPoly
    _fill_ids(ids, local, triangles, ok)

    # One lookup of each pixel's affine (a table with a last row that sends uncovered pixels off the
    # source), then two multiply-adds over the box: no per-pixel gather of 3x2 matrices.
    # The box's origin is folded into each affine's offset in float64, so float32 only ever multiplies
    # small box-local coordinates: the maps keep float64's sub-pixel precision at any frame size.
    flat = mats.reshape(n, 6).astype(np.float64)
    flat[:, 4] += x0 * flat[:, 0] + y0 * flat[:, 2]
    flat[:, 5] += x0 * flat[:, 1] + y0 * flat[:, 3]
    coef = _coefficients(flat, (0, 0, 0, 0, -1e4, -1e4))
    gx = np.arange(x1 - x0, dtype=np.float32)[None, :]
    gy = np.arange(y1 - y0, dtype=np.float32)[:, None]
    map_x, map_y = _maps(coef, ids, gx, gy)
    patch = cv2.remap(src_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.compare(ids, n, cv2.CMP_LT)  # 255 inside the mesh, 0 outside
    return patch, mask, (int(x0), int(y0), int(x1), int(y1))


def warp_dense(
    src_image: np.ndarray,
    src_pts: np.ndarray,
    dst_pts: np.ndarray,
    triangles: np.ndarray,
    dst_shape: tuple[int, int],
    step: int = 2,
    pin_border: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Warp the whole of `src_image` into an image of `dst_shape` (h, w) whose mesh covers every pixel.

    For a mesh that spans the frame (border anchors included), as in the portrait mode where the persona's
    whole photo moves. The per-pixel source coordinates are computed exactly on a grid every `step` pixels
    and interpolated in between: a piecewise-affine map is continuous, so linear interpolation of it is off
    by a fraction of a pixel only along triangle edges, for a quarter of the per-pixel work at step 2.
    Pixels no triangle covers sample the source at the same place (identity); with `pin_border` so do the
    frame's outermost rows and columns, exactly (for a mesh whose border anchors do not move). `out`, if
    given (a view of `dst_shape` into a larger frame, say), receives the result in place of a new array.
    """
    h, w = dst_shape
    gh, gw = -(-h // step), -(-w // step)
    mats, ok = _affines(dst_pts, src_pts, triangles)
    n = len(triangles)
    coef = _coefficients(mats, (1, 0, 0, 1, 0, 0))  # identity for pixels outside the mesh
    # One grid cell of margin on every side (identity there: the frame border is fixed), so the pixels of
    # the outermost rows and columns are interpolated, not clamped to the first sample half a step in.
    ids = np.full((gh + 2, gw + 2), n, dtype=np.int32)
    half = (step - 1) / 2.0  # grid sample i stands for the full-resolution pixel step * (i - 1) + half
    local = np.round(((np.asarray(dst_pts, np.float64) - half) / step + 1) * 16).astype(np.int32)
    _fill_ids(ids, local, triangles, ok)
    gx = (np.arange(-1, gw + 1, dtype=np.float32) * step + half)[None, :]
    gy = (np.arange(-1, gh + 1, dtype=np.float32) * step + half)[:, None]
    map_x, map_y = _maps(coef, ids, gx, gy)
    if step > 1:
        size = ((gw + 2) * step, (gh + 2) * step)
        map_x = cv2.resize(map_x, size, interpolation=cv2.INTER_LINEAR)[step : step + h, step : step + w]
        map_y = cv2.resize(map_y, size, interpolation=cv2.INTER_LINEAR)[step : step + h, step : step + w]
    else:
        map_x, map_y = map_x[1 : 1 + h, 1 : 1 + w], map_y[1 : 1 + h, 1 : 1 + w]
    if pin_border:  # in place: remap takes the row-strided views as they are, no copy needed
        xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
        map_x[[0, -1], :], map_y[[0, -1], :] = xs, np.float32([[0], [h - 1]])
        map_x[:, [0, -1]], map_y[:, [0, -1]] = np.float32([0, w - 1]), ys[:, None]
    res = cv2.remap(src_image, map_x, map_y, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REPLICATE)
    if out is not None and res is not out:  # OpenCV quietly allocates anew when `out` does not fit: copy
        out[...] = res
    return res if out is None else out
