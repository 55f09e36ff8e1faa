"""A persona's face learnt from a short video (about 10 s of the person talking and turning a little).

A family may have a phone video where no single photo shows both sides of the face. Frames are looked at
a few times a second; each with one face gets its 3-D mesh and head pose. Frames are grouped by head turn
(yaw bins), and from each bin the sharpest, largest, most closed-mouthed one is kept, so the views span
the turns the clip holds. The clip's best frontal frame is the base of the texture (and the persona photo
when none is given); other views give only the texels it sees poorly, each from the view that sees it best
(view_merge.py); the neutral 3-D shape is averaged over the views (likeness.py). A clip that cannot serve
gets one line saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import PersonaError
from filters.face.animate import mesh_openness
from filters.face.landmarks import FaceMesher
from filters.face.likeness import Likeness, View, face_sharpness, find_view
from filters.face.view_merge import merge_views

MIN_SECONDS = 2.0
SAMPLE_FPS = 5.0  # frames looked at per second of clip
MAX_SECONDS = 60.0  # only the first minute is looked at
YAW_BIN = 12.0  # degrees: one view kept per bin of head turn
MAX_VIEWS = 8
SEVERAL_FACES_SHARE = 0.3  # a clip where this share of the checked frames shows two faces is refused
OPEN_MOUTH = 0.12  # a view with the mouth this open counts less (the texture would keep it open)


@dataclass
class ClipLikeness:
    likeness: Likeness
    photo: np.ndarray  # the best frontal frame (BGR), for the persona photo when none is given
    seconds: float
    frames_with_face: int
    has_audio: bool


def read_frames(path: Path, fps: float = SAMPLE_FPS,
                max_seconds: float = MAX_SECONDS) -> tuple[list[np.ndarray], float, bool]:
    """(BGR frames about `fps` a second, the clip's length in seconds, whether it has a soundtrack)."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise PersonaError(f"cannot read the video {path}: give an MP4, MOV or WebM clip") from exc
    with container:
        if not container.streams.video:
            raise PersonaError(f"the file {path} has no video: give a clip of the person")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        frames, last_t, next_t = [], 0.0, 0.0
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else last_t + 1.0 / 30
            last_t = t
            if t > max_seconds:
                break
            if t + 1e-6 >= next_t:
                frames.append(frame.to_ndarray(format="bgr24"))
                next_t = t + 1.0 / fps
    return frames, last_t + 1.0 / max(float(stream.average_rate or 30), 1.0), has_audio


def learn_from_clip(path: str | Path) -> ClipLikeness:
    """The likeness of the one person in the clip, or a PersonaError naming what is wrong with the clip."""
    views, seconds, has_audio, found = clip_views(path)
    base = best_view(views)
    return ClipLikeness(merge_views(views, base), views[base].image, seconds, found, has_audio)


def clip_views(path: str | Path) -> tuple[list[View], float, bool, int]:
    """(the chosen views across head turns, the clip's seconds, whether it has a soundtrack, how many
    looked-at frames showed a face); a PersonaError naming what is wrong with a clip that cannot serve."""
    path = Path(path)
    if not path.is_file():
        raise PersonaError(f"video not found: {path}")
    frames, seconds, has_audio = read_frames(path)
    if seconds < MIN_SECONDS:
        raise PersonaError(f"the clip {path.name} is {seconds:.1f} s long: give at least {MIN_SECONDS:.0f} s "
                           "(about 10 s of the person talking and turning a little is best)")
    if _several_faces(frames):
        raise PersonaError(f"the clip {path.name} shows more than one face: trim or crop it to the one person")
    views: list[View] = []
    with FaceMesher(still=True, depth=True) as mesher:
        for frame in frames:
            v = find_view(frame, mesher)
            if v is not None:
                views.append(v)
    if not views:
        raise PersonaError(f"no face found in the clip {path.name}: give a clip where the person's face is "
                           "clearly visible, at least 100 px wide")
    return choose_views(views), seconds, has_audio, len(views)


def best_view(views: list[View]) -> int:
    """Index of the best frontal view (large, sharp, mouth closed, facing the camera): the persona photo
    and the base of the texture."""
    return int(np.argmax([_score(v) * np.cos(np.radians(v.pose.angles()[0])) ** 4 for v in views]))


def choose_views(views: list[View], max_views: int = MAX_VIEWS) -> list[View]:
    """The best view in each bin of head turn: across poses, sharp, large, mouth closed."""
    bins: dict[int, View] = {}
    for v in views:
        k = int(np.round(v.pose.angles()[0] / YAW_BIN))
        if k not in bins or _score(v) > _score(bins[k]):
            bins[k] = v
    ranked = sorted(bins.values(), key=lambda v: abs(v.pose.angles()[0]))
    return ranked[:max_views]


def _score(v: View) -> float:
    mouth = 0.5 if mesh_openness(v.mesh) > OPEN_MOUTH else 1.0
    return float(v.pose.scale) * max(face_sharpness(v), 1.0) ** 0.5 * mouth


def _several_faces(frames: list[np.ndarray], checks: int = 5) -> bool:
    """Whether a good share of a few frames spread over the clip show two faces or more."""
    import cv2
    import mediapipe as mp

    if not frames:
        return False
    picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(checks, len(frames)))]
    several = 0
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2) as mesh:
        for frame in picks:
            result = mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            several += len(result.multi_face_landmarks or []) >= 2
    return several >= max(1, int(np.ceil(SEVERAL_FACES_SHARE * len(picks))))
