"""Operator clips made from one photo: the head turns to +-40 degrees, nods, and comes closer and goes further.

No package ships a face video, so the clips are synthesised. The photo is framed as a webcam would frame
it (640x480, face about 150 px wide). For each frame the head is turned in 3-D: the person's own face is
unwrapped into the pose-free atlas and drawn again at the new pose with the person's own 3-D shape
(filters/face/face3d.py), over the frame whose head region was first swung about a vertical cylinder (so
hair and ears move with the face); then the whole frame is zoomed about the face. The face drawn is the
person's own, so the yardstick still sees the operator in these frames (the benchmark reports how close).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from benchmarks.face_scenes import cylinder_turn
from filters.face.atlas import unwrap
from filters.face.blend import composite, face_width, feathered_region
from filters.face.face3d import Pose, canonical, fit_pose, mesh3d, render, symmetrised, point_facing
from filters.face.landmarks import FaceMesher, face_oval_indices

FRAME = (480, 640)  # h, w
FACE_PX = 150
GREY = (118, 118, 118)
MAX_TURN = 60.0


@dataclass
class ClipFrame:
    image: np.ndarray
    yaw: float  # degrees the head is turned from the photo's own pose (the sign of Pose.angles' yaw)
    pitch: float
    zoom: float
    photo_yaw: float  # the photo's own head turn


def frame_photo(photo: np.ndarray, face_px: float = FACE_PX, size: tuple[int, int] = FRAME) -> np.ndarray:
    """The photo scaled so the face is `face_px` wide and cropped (grey beyond its edges) to a webcam frame
    with the face a little above the middle."""
    with FaceMesher(still=True) as mesher:
        pts = mesher(photo)
    if pts is None:
        raise ValueError("no face in the operator photo")
    pts = pts[:468]
    k = face_px / face_width(pts[face_oval_indices()])
    centre = pts.mean(axis=0)
    h, w = size
    m = np.array([[k, 0, w / 2 - k * centre[0]], [0, k, 0.42 * h - k * centre[1]]], np.float32)
    return cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=GREY)


def schedule(n: int, turn: float = 40.0) -> list[tuple[float, float, float]]:
    """(yaw, pitch, zoom) for each of `n` frames: turn to +`turn`, back, to -`turn`, back (degrees from
    frontal, as drawn); three nods; closer and further. The face tracker sees less turn than drawn (the
    head around the face is only swung in 2-D): the benchmark measures and reports what it sees."""
    out = []
    for i in range(n):
        s = i / max(n - 1, 1)
        yaw = turn * np.sin(2 * np.pi * s)  # 0 -> +turn -> 0 -> -turn -> 0
        pitch = 12.0 * np.sin(6 * np.pi * s)  # three nods
        zoom = 1.0 + 0.2 * np.sin(4 * np.pi * s + 0.5)  # about 0.8x to 1.2x the face size
        out.append((float(yaw), float(pitch), float(zoom)))
    return out


class ClipMaker:
    """Frames of one operator at chosen poses, drawn from their framed photo."""

    def __init__(self, photo: np.ndarray) -> None:
        self.base = frame_photo(photo)
        with FaceMesher(still=True, depth=True) as mesher:
            found = mesher(self.base)
        if found is None:
            raise ValueError("no face in the framed operator photo")
        self.mesh = mesh3d(found)
        self.pose = fit_pose(self.mesh)
        self.shape = symmetrised(self.pose.undo(self.mesh), point_facing(self.mesh))
        self.atlas = unwrap(self.base, self.mesh)
        self.oval = np.array(face_oval_indices(), np.int32)

    def frame(self, yaw: float, pitch: float, zoom: float) -> ClipFrame:
        h, w = self.base.shape[:2]
        pts = self.mesh[:, :2]
        centre = pts[self.oval].mean(axis=0)
        image = _swing(self.base, pts, self.oval, -yaw) if abs(yaw) > 0.5 else self.base.copy()
        if abs(yaw) > 0.5 or abs(pitch) > 0.5:
            # Turn about the head's centre (a little behind the face), not about the canonical origin.
            pivot = np.array([0.0, 0.25, 0.45])
            posed = Pose(self.pose.scale, self.pose.rot, self.pose.shift)
            turned = posed.turned(yaw, pitch)
            shift = posed.apply(pivot[None])[0] - turned.apply(pivot[None])[0]
            turned = Pose(turned.scale, turned.rot, turned.shift + shift)
            target = turned.apply(self.shape)
            c = canonical()
            patch, drawn, box = render(self.atlas.texture, self.atlas.points, target, c.coarse, (h, w))
            if box[2] - box[0] > 8:
                size = face_width(target[self.oval, :2])
                alpha = feathered_region(drawn, size, (h, w), box)
                composite(image, patch, alpha, box)
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, zoom)
        image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return ClipFrame(image, yaw, pitch, zoom, self.pose.angles()[0])

    @property
    def photo_yaw(self) -> float:
        return self.pose.angles()[0]

    def clip(self, n: int, turn: float = 40.0) -> list[ClipFrame]:
        """`n` frames whose head turns between +-40 degrees from frontal (a photo already turned is turned
        back through frontal; at most MAX_TURN from its own pose, past which its far side is all mirror)."""
        own = self.pose.angles()[0]
        return [self.frame(float(np.clip(yaw - own, -MAX_TURN, MAX_TURN)), pitch, zoom)
                for yaw, pitch, zoom in schedule(n, turn)]


def _swing(image: np.ndarray, pts: np.ndarray, oval: np.ndarray, degrees: float) -> np.ndarray:
    """The head region turned by `degrees` about a vertical cylinder through the face (hair and ears follow;
    the face itself is drawn again in 3-D over it)."""
    return cylinder_turn(image, pts, pts[oval], degrees, girth=1.35, above=0.8, below=0.2,
                         border=cv2.BORDER_REPLICATE)


def write_clip(path, frames: list[np.ndarray], fps: int = 30, audio: np.ndarray | None = None,
               rate: int = 16000) -> None:
    """An MP4 (H.264 video, AAC audio when `audio` is given, mono float32 at `rate`) of BGR `frames`."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        astream = out.add_stream("aac", rate=rate, layout="mono") if audio is not None else None
        for frame in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if astream is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            step = 1024
            for k in range(0, len(pcm), step):
                af = av.AudioFrame.from_ndarray(pcm[None, k : k + step], format="s16", layout="mono")
                af.sample_rate = rate
                for packet in astream.encode(af):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
