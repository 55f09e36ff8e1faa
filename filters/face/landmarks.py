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
        self._graph = _GraphRun.of(self._mesh)

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray | None:
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        with self._lock:
            if self._graph is not None:
                xyz = self._graph(rgb)
            else:
                result = self._mesh.process(rgb)
                xyz = _from_protos(result.multi_face_landmarks)
        if xyz is None:
            return None
        scale = (w, h, w) if self._depth else (w, h)
        return (xyz[:, : len(scale)] * scale).astype(np.float32)

    def close(self) -> None:
        self._mesh.close()


def _from_protos(faces) -> np.ndarray | None:
    """The first face's landmarks (N, 3) as float64 (x, y normalised, z on x's scale), or None."""
    if not faces:
        return None
    return np.array([(p.x, p.y, p.z) for p in faces[0].landmark], dtype=np.float64)


# A NormalizedLandmark on the wire when x, y and z are set and nothing else (what the face mesh sends):
# tag 0x0a, length 15, then 0x0d x, 0x15 y, 0x1d z as little-endian float32; 17 bytes a point.
_WIRE_POINT = np.dtype([("head", "u1", 3), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"), ("tz", "u1"), ("z", "<f4")])
_WIRE_HEAD = np.array([0x0A, 0x0F, 0x0D], np.uint8)


def _from_wire(serialized: bytes) -> np.ndarray | None:
    """Landmarks (N, 3) float64 from a serialized NormalizedLandmarkList, or None if its layout is not the
    plain x, y, z one (then the caller parses it as a proto)."""
    if len(serialized) % _WIRE_POINT.itemsize:
        return None
    rec = np.frombuffer(serialized, _WIRE_POINT)
    if not ((rec["head"] == _WIRE_HEAD).all() and (rec["ty"] == 0x15).all() and (rec["tz"] == 0x1D).all()):
        return None
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)


class _GraphRun:
    """One frame through a MediaPipe solution's graph, as `SolutionBase.process` does it (mediapipe 0.10.21),
    less two costs of its own per frame: a namedtuple class built on every call, and 478 landmark protos
    parsed and read field by field (together about half a millisecond of the caller's time a frame). The
    landmarks are read straight from their wire form, the same float32 values. `of` returns None when the
    installed mediapipe lacks what this relies on; the mesher then calls `process` as usual."""

    _STREAM_IN, _STREAM_OUT = "image", "multi_face_landmarks"

    def __init__(self, solution, image_type, serialized_list) -> None:
        self._solution = solution
        self._image_type = image_type
        self._serialized_list = serialized_list

    @classmethod
    def of(cls, solution) -> "_GraphRun | None":
        try:
            from mediapipe.python._framework_bindings import _packet_getter
            from mediapipe.python.solution_base import PacketDataType

            inputs, outputs = solution._input_stream_type_info, solution._output_stream_type_info
            usable = (inputs == {cls._STREAM_IN: PacketDataType.IMAGE}
                      and outputs == {cls._STREAM_OUT: PacketDataType.PROTO_LIST}
                      and all(hasattr(solution, a) for a in ("_graph", "_graph_outputs", "_simulated_timestamp",
                                                             "_make_packet")))
            return cls(solution, PacketDataType.IMAGE, _packet_getter._get_serialized_proto_list) if usable else None
        except (ImportError, AttributeError):
            return None

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        s = self._solution
        s._graph_outputs.clear()
        s._simulated_timestamp += 33333  # as process() does: a 30 fps clock for the tracker
        packet = s._make_packet(self._image_type, rgb).at(s._simulated_timestamp)
        s._graph.add_packet_to_input_stream(stream=self._STREAM_IN, packet=packet)
        s._graph.wait_until_idle()
        out = s._graph_outputs.get(self._STREAM_OUT)
        if out is None or out.is_empty():
            return None
        faces = self._serialized_list(out)
        if not faces:
            return None
        xyz = _from_wire(faces[0])
        if xyz is None:
            from mediapipe.framework.formats import landmark_pb2

            xyz = _from_protos([landmark_pb2.NormalizedLandmarkList.FromString(faces[0])])
        return xyz


def face_oval_indices() -> list[int]:
    """Mesh indices of the face outline, in order around the face."""
    return _ordered_loop(_face_mesh_module().FACEMESH_FACE_OVAL)


def feature_indices(feature: str) -> np.ndarray:
    """Sorted mesh indices of one of MediaPipe's features: "left_eye", "right_eye", "left_eyebrow",
    "right_eyebrow" or "lips" (left and right as MediaPipe names them)."""
    edges = getattr(_face_mesh_module(), f"FACEMESH_{feature.upper()}")
    return np.array(sorted({i for edge in edges for i in edge}), dtype=np.int32)


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
