"""Face landmarks from MediaPipe face mesh (the model ships inside the mediapipe 0.10.21 wheel).

`FaceMesher` wraps one MediaPipe graph. A graph is not thread-safe and keeps tracking state between
frames, so each video stage owns its own mesher; stills (persona photos) use `still=True`.
"""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

# MediaPipe logs through glog/absl to stderr on every graph start; keep the terminal for our own lines.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_MESH_POINTS = 468  # without the 10 iris points that refine_landmarks adds


def _face_mesh_module():
    import mediapipe as mp

    return mp.solutions.face_mesh


class ClosesOnExit:
    """`with X(...) as x:` for the classes below and the face filters: `close()` runs on leaving the block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def face_down(points: np.ndarray) -> np.ndarray:
    """The face's own "down" (nose bridge towards chin) as a unit vector, whatever the head's roll."""
    down = points[152] - points[168]
    return down / max(float(np.linalg.norm(down)), 1e-6)


class FaceMesher(ClosesOnExit):
    """Finds the largest face and returns its mesh points in pixels, shape (478, 2) float32, or None.

    With `depth=True` the points are (478, 3): x, y and MediaPipe's relative depth z (away from the
    camera), all three in pixels (z is given on the same scale as x), which is what the 3-D face needs.
    """

    def __init__(self, still: bool = False, min_confidence: float = 0.5, depth: bool = False) -> None:
        self._depth = depth
        self._mesh = _face_mesh_module().FaceMesh(
            static_image_mode=still,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        self._lock = threading.Lock()

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray | None:
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        with self._lock:
            result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        if self._depth:
            return np.array([(p.x * w, p.y * h, p.z * w) for p in lm], dtype=np.float32)
        return np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float32)

    def close(self) -> None:
        self._mesh.close()


def face_oval_indices() -> list[int]:
    """Mesh indices of the face outline, in order around the face."""
    return _ordered_loop(_face_mesh_module().FACEMESH_FACE_OVAL)


def lips_inner_indices() -> list[int]:
    """Mesh indices of the inner lip line (the mouth opening), in order."""
    inner = {13, 14, 78, 308, 82, 87, 312, 317, 80, 88, 310, 318, 81, 178, 311, 402, 95, 324, 191, 415}
    edges = [(a, b) for a, b in _face_mesh_module().FACEMESH_LIPS if a in inner and b in inner]
    return _ordered_loop(edges)


def _ordered_loop(edges) -> list[int]:
    """Turn an unordered set of edges forming one closed loop into the ordered list of its vertices."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    start = min(nbrs)
    order, prev, cur = [start], None, start
    while True:
        nxt = [n for n in nbrs[cur] if n != prev]
        if not nxt or nxt[0] == start:
            break
        prev, cur = cur, nxt[0]
        order.append(cur)
        if len(order) > len(nbrs):
            break
    return order
