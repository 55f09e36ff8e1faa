"""A persona's face as the 3-D swap uses it: a pose-free texture and a neutral 3-D shape, learnt once.

From one photo, or from several views (frames of a short video): each view's mesh is fitted to the
canonical face (its head pose taken out), the shapes are averaged with each point weighted by how well
the views saw it (a point a view sees poorly comes from its mirror partner), and the texture is merged
in the atlas (atlas.py). The result is saved as bytes in the persona's derived data, so a call does not
unwrap the photo again, and so a persona made from a video needs no video at call time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import PersonaError
from engine.face_contract import NO_FACE_MESSAGE, check_photo
from filters.face.atlas import ATLAS_PX, FaceAtlas, merge, view
from filters.face.face3d import Pose, fit_pose, mesh3d, point_facing, symmetrised
from filters.face.landmarks import FaceMesher

FORMAT = 1
SHAPE_TURN_POWER = 8
SHARP_POWER = 2


@dataclass
class Likeness:
    """`atlas` the face texture; `shape` (468, 3) the neutral face in the canonical frame (face width 1);
    `yaws` the head turns (degrees) of the views it was learnt from; `face_px` the face's width in the best
    view; `sharpness` of that view (variance of the Laplacian over the face, at 200 px face width)."""

    atlas: FaceAtlas
    shape: np.ndarray
    yaws: list[float]
    face_px: float
    sharpness: float

    def coverage(self) -> tuple[float, float]:
        return self.atlas.coverage()

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        ok, png = cv2.imencode(".png", self.atlas.texture)
        np.savez_compressed(buf, format=FORMAT, texture=np.frombuffer(png.tobytes(), np.uint8),
                            weight=self.atlas.weight.astype(np.float16),
                            points=self.atlas.points, shape=self.shape, yaws=np.array(self.yaws, np.float64),
                            face_px=self.face_px, sharpness=self.sharpness)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Likeness":
        """Raises PersonaError for bytes from another evercall version (the caller learns it again)."""
        try:
            data = np.load(io.BytesIO(blob))
            if int(data["format"]) != FORMAT:
                raise ValueError("format")
            texture = cv2.imdecode(data["texture"], cv2.IMREAD_COLOR)
            atlas = FaceAtlas(texture, data["weight"].astype(np.float32), data["points"].astype(np.float32))
            return cls(atlas, data["shape"].astype(np.float64), [float(y) for y in data["yaws"]],
                       float(data["face_px"]), float(data["sharpness"]))
        except Exception as exc:  # noqa: BLE001 - any damage means: learn it again
            raise PersonaError("the saved face likeness is unreadable") from exc


@dataclass
class View:
    """One image of the persona with its 3-D mesh and pose."""

    image: np.ndarray
    mesh: np.ndarray  # (468, 3)
    pose: Pose


def find_view(image: np.ndarray, mesher: FaceMesher) -> View | None:
    found = mesher(image)
    if found is None:
        return None
    mesh = mesh3d(found)
    return View(image, mesh, fit_pose(mesh))


def from_views(views: list[View], px: int = ATLAS_PX) -> Likeness:
    """A likeness learnt from one or more views of the same person."""
    if not views:
        raise PersonaError(NO_FACE_MESSAGE)
    shapes, weights = [], []
    for v in views:
        w = point_facing(v.mesh)
        shapes.append(symmetrised(v.pose.undo(v.mesh), w))
        # The mesher's depth is surest on a near-frontal face: turned views teach the shape less.
        turn = np.cos(np.radians(v.pose.angles()[0])) ** SHAPE_TURN_POWER
        weights.append(np.maximum(w, 1e-3) ** 2 * turn)
    wsum = np.sum(weights, axis=0)
    shape = np.sum([s * w[:, None] for s, w in zip(shapes, weights)], axis=0) / wsum[:, None]
    # Sharper views count more (a frame blurred by motion or focus would soften the texture it gives).
    sharp = np.array([face_sharpness(v) for v in views])
    atlases = [view(v.image, v.mesh, px) for v in views]
    for a, s in zip(atlases, sharp):
        a.weight *= np.float32((s / max(float(sharp.max()), 1e-6)) ** SHARP_POWER)
    atlas = merge(atlases)
    best = max(range(len(views)), key=lambda i: views[i].pose.scale * np.cos(np.radians(views[i].pose.angles()[0])))
    return Likeness(atlas, shape, [v.pose.angles()[0] for v in views], float(views[best].pose.scale),
                    float(sharp[best]))


def from_photo(photo: np.ndarray) -> Likeness:
    """A likeness from one photo; PersonaError when it shows no face."""
    photo = check_photo(photo)
    with FaceMesher(still=True, depth=True) as mesher:
        v = find_view(photo, mesher)
    if v is None:
        raise PersonaError(NO_FACE_MESSAGE)
    return from_views([v])


def face_sharpness(v: View) -> float:
    """Variance of the Laplacian over the face's box, the face first scaled to 200 px wide: a blurred or
    upscaled photo scores low whatever its pixel size."""
    pts = v.mesh[:, :2]
    (x0, y0), (x1, y1) = np.floor(pts.min(axis=0)).astype(int), np.ceil(pts.max(axis=0)).astype(int)
    h, w = v.image.shape[:2]
    crop = v.image[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    if crop.size == 0:
        return 0.0
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    scale = 200.0 / max(crop.shape[1], 1)
    grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


DERIVED_KEY = "face_likeness"


def likeness_for(persona) -> Likeness:
    """The persona's likeness, from its derived data when a saved one is there (a persona made from a
    video keeps the one learnt from its frames), else learnt from the photo now and kept in
    `persona.derived` (the store saves it, encrypted, when it saves the persona)."""
    blob = persona.derived.get(DERIVED_KEY)
    if blob is not None:
        try:
            return Likeness.from_bytes(blob)
        except PersonaError:
            pass  # saved by another evercall version: learn it again from the photo
    likeness = from_photo(persona.photo)
    persona.derived[DERIVED_KEY] = likeness.to_bytes()
    return likeness
