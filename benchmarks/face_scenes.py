"""Face scenes made from one operator frame, shared by the face tests and the face benchmark: an open
mouth with teeth, a cup or a gloved hand in front of the face, a head turned about a vertical axis, a
blink (any mesh deformation). Each is built from the frame's own MediaPipe mesh (still-image mode).
"""

from __future__ import annotations

import cv2
import numpy as np

from filters.face.animate import LEFT_EYE, RIGHT_EYE
from filters.face.landmarks import FaceMesher, lips_inner_indices
from filters.face.warp import triangulate, warp_face


def still_mesh(image: np.ndarray) -> np.ndarray:
    """The 468 mesh points MediaPipe finds in a still image (the test fails if there is no face)."""
    with FaceMesher(still=True) as mesher:
        pts = mesher(image)
    assert pts is not None, "no face in the image"
    return pts[:468]


def open_mouth(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The operator with the jaw dropped and a mouth interior (upper and lower teeth, dark throat) painted in.

    Returns the frame and a mask of the painted interior, shrunk so the lip edge is not counted.
    """
    pts = still_mesh(frame)
    H = frame.shape[0]
    mouth_w = float(np.linalg.norm(pts[308] - pts[78]))
    lip_line = (pts[13, 1] + pts[14, 1]) / 2
    below = np.clip((pts[:, 1] - lip_line + 2) / 4, 0, 1)  # 1 under the lip line, 0 above it
    centre_x = pts[[78, 308], 0].mean()
    jaw = np.clip(1 - np.abs(pts[:, 0] - centre_x) / (1.2 * mouth_w), 0.3, 1)  # the chin drops most
    dst = pts.copy()
    dst[:, 1] += 0.2 * mouth_w * below * jaw
    patch, mask, (x0, y0, x1, y1) = warp_face(frame, pts, dst, triangulate(pts), frame.shape[:2])
    out = frame.copy()
    out[y0:y1, x0:x1][mask > 0] = patch[mask > 0]

    interior = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(interior, [np.round(dst[lips_inner_indices()]).astype(np.int32)], 255)
    ys = np.nonzero(interior.any(axis=1))[0]
    row = np.broadcast_to(((np.arange(H) - ys.min()) / max(np.ptp(ys), 1))[:, None], interior.shape)
    paint = np.empty_like(out)
    paint[:] = (45, 35, 110)  # throat and tongue
    paint[row < 0.3] = (225, 232, 240)  # upper teeth
    paint[row > 0.85] = (200, 210, 220)  # lower teeth
    paint = cv2.GaussianBlur(paint, (3, 3), 0)
    out[interior > 0] = paint[interior > 0]
    core = cv2.erode(interior, np.ones((5, 5), np.uint8)) > 0
    return out, core


def with_cup(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A white mug with a red band raised in front of the mouth and chin; returns (frame, its mask)."""
    pts = still_mesh(frame)
    x0, x1 = int(pts[61, 0]) - 25, int(pts[291, 0]) + 30
    y0, y1 = int(pts[2, 1]) + 5, int(pts[152, 1]) + 60
    out, mask = frame.copy(), np.zeros(frame.shape[:2], np.uint8)
    cv2.rectangle(mask, (x0, y0), (x1, y1), 255, -1)
    out[mask > 0] = (235, 238, 240)
    cv2.rectangle(out, (x0 + 8, y0 + 15), (x1 - 8, y0 + 35), (40, 40, 200), -1)
    return out, mask


def with_hand(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A green-gloved hand (palm and four fingers) over one cheek and eye; returns (frame, its mask)."""
    pts = still_mesh(frame)
    cx, cy = (int(v) for v in pts[205])
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.ellipse(mask, (cx - 10, cy + 25), (35, 45), 15, 0, 360, 255, -1)
    for k in range(4):
        x = cx - 40 + 18 * k
        cv2.line(mask, (x, cy + 10), (x + 10, cy - 55 + int(5 * abs(k - 1.5))), 255, 13)
    out = frame.copy()
    out[mask > 0] = (60, 150, 70)
    return out, mask


def yawed(frame: np.ndarray, degrees: float) -> np.ndarray:
    """The head turned by `degrees` (positive: toward the viewer's left) about a vertical cylinder through
    the face: the near side widens, the far side crowds toward the silhouette."""
    from filters.face.landmarks import face_oval_indices

    pts = still_mesh(frame)
    return cylinder_turn(frame, pts, pts[face_oval_indices()], degrees)


def cylinder_turn(image: np.ndarray, pts: np.ndarray, outline: np.ndarray, degrees: float, girth: float = 1.25,
                  above: float = 0.6, below: float = 0.25, border: int = cv2.BORDER_REFLECT) -> np.ndarray:
    """`image` with the head turned by `degrees` about a vertical cylinder `girth` times as wide as the face
    `outline`, from `above` radii over the mesh's top to `below` radii under its chin (mesh point 152)."""
    h, w = image.shape[:2]
    cx, r = float(outline[:, 0].mean()), float(np.ptp(outline[:, 0])) / 2 * girth
    xs = np.arange(w, dtype=np.float32)
    phi = np.arcsin(np.clip((xs - cx) / r, -1, 1)) - np.radians(degrees)
    src = np.where(np.abs(phi) < np.pi / 2, cx + r * np.sin(phi), np.where(phi < 0, cx - r, cx + r))
    src = np.where(np.abs(xs - cx) < r, src, xs)
    top, chin = float(pts[:, 1].min()) - above * r, float(pts[152, 1]) + below * r
    ys = np.arange(h, dtype=np.float32)
    rows = np.clip(1 - (ys - chin) / (0.5 * r), 0, 1) * np.clip((ys - top) / (0.3 * r) + 1, 0, 1)
    map_x = (xs[None, :] + rows[:, None] * (src - xs)[None, :]).astype(np.float32)
    map_y = np.repeat(ys[:, None], w, axis=1).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)


def deform(frame: np.ndarray, move) -> np.ndarray:
    """`frame` with its face warped so its mesh points go where `move(points)` puts them."""
    pts = still_mesh(frame)
    dst = move(pts.copy())
    patch, mask, (x0, y0, x1, y1) = warp_face(frame, pts, dst, triangulate(pts), frame.shape[:2])
    out = frame.copy()
    out[y0:y1, x0:x1][mask > 0] = patch[mask > 0]
    return out


def close_eyes(pts: np.ndarray) -> np.ndarray:
    for pairs in (RIGHT_EYE, LEFT_EYE):
        for up, lo in pairs:
            pts[up] += 0.85 * (pts[lo] - pts[up])
    return pts
