"""Temporal stability of the embedded face modes: a still head gives a still picture, a moving one is not trailed.

Jitter is the RMS frame-to-frame motion of the landmarks that an independent still mesher (MediaPipe in
static-image mode, no tracking, no smoothing) finds in each frame, in pixels. On the input it measures
the camera's noise as a mesher sees it; on the output, how much the picture shimmers. Frame-to-frame
motion rather than spread about the mean, because slow settling (the resting face being learnt over
seconds) is not jitter. The still mesher itself moves its points by a few tenths of a pixel for any
change of the image at all, so the output cannot score far below the input: the point is that it does
not score above it, and that without the landmark smoothing it would.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from filters.face.landmarks import FaceMesher
from filters.face.portrait import PortraitFilter
from filters.face.smoothing import LandmarkSmoother
from filters.face.swap import FaceSwapFilter
from tests.test_face_swap import H, W, operator, persona  # noqa: F401 (fixtures)

NOISE = 6.0  # grey levels of sensor noise: a webcam in a dim room
FRAMES = 20
SKIP = 4  # the first frames settle (the tracker's first frame comes from its detector)


def still_clip(frame: np.ndarray, n: int = FRAMES, seed: int = 0) -> list[np.ndarray]:
    """A still head: the same frame `n` times, each with fresh sensor noise."""
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.normal(0.0, NOISE, frame.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def landmarks(frames: list[np.ndarray]) -> np.ndarray:
    with FaceMesher(still=True) as mesher:
        found = [mesher(f) for f in frames]
    assert all(p is not None for p in found)
    return np.array([p[:468] for p in found])


def jitter(frames: list[np.ndarray]) -> float:
    """RMS frame-to-frame landmark motion (px) after the first SKIP frames."""
    pts = landmarks(frames)[SKIP:]
    return float(np.sqrt((np.diff(pts, axis=0) ** 2).sum(axis=2).mean()))


def run(f, frames: list[np.ndarray]) -> list[np.ndarray]:
    outs = []
    for i, frame in enumerate(frames):
        out = f.process(frame, i / 30)
        assert out.source == "converted"
        outs.append(out.image)
    return outs


def test_smoother_calms_jitter_and_follows_motion():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 150, (468, 2))  # a face's worth of points, 150 px across
    t = np.arange(40) / 30

    still = [base + rng.normal(0, 0.3, base.shape) for _ in t]
    s = LandmarkSmoother()
    out = np.array([s(p, ti, 150.0) for p, ti in zip(still, t)])
    raw_j = np.sqrt((np.diff(np.array(still)[5:], axis=0) ** 2).sum(axis=2).mean())
    out_j = np.sqrt((np.diff(out[5:], axis=0) ** 2).sum(axis=2).mean())
    assert out_j < 0.4 * raw_j  # a still head's tracker jitter mostly gone

    s = LandmarkSmoother()
    for ti in t[:10]:
        s(base, ti, 150.0)
    blink = base.copy()
    blink[:16, 1] += 5.0  # the upper lids come down 5 px in one frame
    first = s(blink, t[10], 150.0)
    second = s(blink, t[11], 150.0)
    # Shown at once, not eased in over a blink's length (a blink lasts 3 to 5 frames)...
    assert np.all(first[:16, 1] - base[:16, 1] > 0.8 * 5.0)
    assert np.all(second[:16, 1] - base[:16, 1] > 0.9 * 5.0)
    assert np.abs(second[16:] - base[16:]).max() < 0.1  # ...and only where it happened

    def ramp_lag(smoother: LandmarkSmoother) -> float:
        """How far behind a head moving one face width a second (5 px a frame) the points trail."""
        last = None
        for ti in t:
            moved = base + (150.0 * ti, 0.0)
            last = smoother(moved, ti, 150.0) - moved
        return float(np.abs(last[:, 0]).mean())

    assert ramp_lag(LandmarkSmoother()) < 1.0
    assert ramp_lag(LandmarkSmoother(beta=0.0)) > 5.0  # a fixed low-pass as calm at rest would trail


@pytest.mark.parametrize("mode", [FaceSwapFilter, PortraitFilter], ids=["swap", "portrait"])
def test_a_still_head_gives_a_still_picture(mode, persona, operator, monkeypatch):
    clip = still_clip(operator)
    with mode(persona) as f:
        smoothed = jitter(run(f, clip))
    assert smoothed <= jitter(clip)
    # Control: without the landmark smoothing the tracker's jitter shows in the picture.
    monkeypatch.setattr(LandmarkSmoother, "__call__", lambda self, points, t, scale: points)
    with mode(persona) as f:
        raw = jitter(run(f, clip))
    assert raw > 1.1 * smoothed


def test_swap_keeps_up_with_a_moving_head(persona, operator):
    """The persona's face stays on the operator's head while it moves: smoothing must not make it trail."""
    rigid = [168, 6, 33, 133, 362, 263, 234, 454]  # nose bridge, eye corners, face sides

    def pan(i: int) -> np.ndarray:
        shift = 0.0 if i < 6 else 4.0 * (i - 5)  # still, then 4 px a frame (120 px/s) to the right
        m = np.float32([[1, 0, shift], [0, 1, 0]])
        return cv2.warpAffine(operator, m, (W, H), borderMode=cv2.BORDER_REFLECT)

    def trail(smoother: LandmarkSmoother | None) -> float:
        clip = [pan(i) for i in range(16)]
        with FaceSwapFilter(persona) as f:
            if smoother is not None:
                f._smoother = smoother
            outs = run(f, clip)
        offset = landmarks(outs)[:, rigid, 0].mean(axis=1) - landmarks(clip)[:, rigid, 0].mean(axis=1)
        rest = offset[2:6].mean()  # her proportions differ from the operator's: compare with the rest pose
        return float(np.abs(offset[8:] - rest).mean())

    assert trail(None) < 1.5
    assert trail(LandmarkSmoother(beta=0.0)) > 3.0  # control: a plain low-pass trails visibly


def test_tracking_points_are_mediapipes_own(operator):
    """The mesher reads MediaPipe's results its own, faster way (landmarks.py's _GraphRun): the tracked
    points must be exactly those MediaPipe's process() hands out, frame after frame, head moving or not,
    face lost and found again; or the face the far end sees would move differently."""
    def turn(i: int) -> np.ndarray:
        m = cv2.getRotationMatrix2D((W / 2, H * 0.4), 4.0 * np.sin(i / 3.0), 1.0 + 0.03 * np.sin(i / 4.0))
        m[:, 2] += (8.0 * np.sin(i / 5.0), 0.0)
        return cv2.warpAffine(operator, m, (W, H), borderMode=cv2.BORDER_REFLECT)

    clip = [turn(i) for i in range(12)] + [np.zeros_like(operator)] * 2 + [turn(i) for i in range(4)]
    for depth in (True, False):
        with FaceMesher(depth=depth) as fast, FaceMesher(depth=depth) as stock:
            assert fast._graph is not None  # the faster reading is in use with this mediapipe
            stock._graph = None  # MediaPipe's own process() and its landmark protos
            for frame in clip:
                a, b = fast(frame), stock(frame)
                assert (a is None) == (b is None)
                if a is not None:
                    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (478, 3 if depth else 2)
                    assert np.array_equal(a, b)
