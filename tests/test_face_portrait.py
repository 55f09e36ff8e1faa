"""The embedded "portrait" face mode as the far end sees it: the persona's own photo, moving as the operator does.

Persona: matplotlib's Grace Hopper photo. Operator: scikit-image's astronaut in 640x480 frames, with
expressions made by warping her face (eyes closed, brows raised, jaw dropped with a painted mouth
interior). What the output shows is judged by an independent still mesher and by dlib's descriptor
(tests/identity.py), neither of which the filter uses.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from engine.errors import PersonaError
from filters.face.animate import LEFT_EYE, RIGHT_EYE
from filters.face.fallback import cover_fit
from filters.face.landmarks import lips_inner_indices
from filters.face.portrait import PortraitFilter
from benchmarks.identity import DIFFERENT_PEOPLE, distance, face_descriptor
from benchmarks.face_scenes import close_eyes, deform, open_mouth, still_mesh  # noqa: F401 (shared)
from tests.test_face_swap import H, W, moved, operator, persona  # noqa: F401 (fixtures)

BROWS = [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]


@pytest.fixture
def portrait(persona):
    f = PortraitFilter(persona, hold_s=0.5)
    yield f
    f.close()


def raise_brows(pts: np.ndarray) -> np.ndarray:
    pts[BROWS, 1] -= 0.35 * np.linalg.norm(pts[33] - pts[133])
    return pts


def eye_openness(pts: np.ndarray) -> float:
    """Lid gap over eye width, both eyes (about 0.3 open, under 0.2 closing)."""
    gaps = []
    for pairs, (a, b) in ((RIGHT_EYE, (33, 133)), (LEFT_EYE, (263, 362))):
        width = np.linalg.norm(pts[a] - pts[b])
        gaps.append(np.mean([np.linalg.norm(pts[u] - pts[l]) for u, l in pairs[2:5]]) / width)
    return float(np.mean(gaps))


def brow_height(pts: np.ndarray) -> float:
    """Brow above the upper lid, over the eye width."""
    return float(((pts[159, 1] - pts[105, 1]) + (pts[386, 1] - pts[334, 1]))
                 / (np.linalg.norm(pts[33] - pts[133]) + np.linalg.norm(pts[263] - pts[362])))


def roll_deg(pts: np.ndarray) -> float:
    dx, dy = pts[263] - pts[33]
    return math.degrees(math.atan2(dy, dx))


def settle(f: PortraitFilter, frame: np.ndarray, n: int = 4, t0: float = 0.0) -> float:
    """Feed the operator's resting face for `n` frames; returns the next frame time."""
    for i in range(n):
        assert f.process(frame, t0 + i / 30).source == "converted"
    return t0 + n / 30


def test_output_is_the_persona_photo_not_the_operator(portrait, persona, operator):
    persona_d, operator_d = face_descriptor(persona), face_descriptor(operator)
    still = cover_fit(persona, (H, W), tuple(still_mesh(persona).mean(axis=0)))
    to_persona = []
    for i in range(8):
        frame = moved(operator, i)
        before = frame.copy()
        out = portrait.process(frame, i / 30)
        assert np.array_equal(frame, before)  # the caller's frame is not modified
        assert out.face_found and out.source == "converted"
        assert out.image.shape == frame.shape and out.image.dtype == np.uint8
        # The whole picture is her photo, moved a little; nothing of the operator's room or body.
        to_still = np.abs(out.image.astype(int) - still.astype(int)).mean()
        assert to_still < 0.5 * np.abs(out.image.astype(int) - frame.astype(int)).mean()
        d = face_descriptor(out.image)
        assert d is not None
        to_persona.append(distance(d, persona_d))
        assert distance(d, operator_d) > DIFFERENT_PEOPLE
    assert float(np.median(to_persona)) <= 0.35


def test_head_roll_and_shift_move_her_head_and_keep_the_border(portrait, operator):
    t = settle(portrait, operator)
    rest = portrait.process(operator, t).image
    m = cv2.getRotationMatrix2D((W / 2, H * 0.4), -10.0, 1.0)  # the operator tilts 10 degrees (clockwise)
    m[:, 2] += (15.0, 0.0)
    tilted = cv2.warpAffine(operator, m, (W, H), borderMode=cv2.BORDER_REFLECT)
    out = portrait.process(tilted, t + 1 / 30).image

    turned = roll_deg(still_mesh(out)) - roll_deg(still_mesh(rest))
    assert 5.0 < turned < 12.0  # same direction, damped, within the clamp
    shift = still_mesh(out)[:, 0].mean() - still_mesh(rest)[:, 0].mean()
    assert shift > 4.0
    # The frame border is pinned: the edge rows and columns are the still portrait's.
    diff = np.abs(out.astype(int) - rest.astype(int)).max(axis=2)
    edges = np.concatenate([diff[0], diff[-1], diff[:, 0], diff[:, -1]])
    assert edges.max() <= 2


def eye_region(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mask of both eyes (lids included), from a mesh."""
    mask = np.zeros(shape, np.uint8)
    for pairs, (outer, inner) in ((RIGHT_EYE, (33, 133)), (LEFT_EYE, (263, 362))):
        loop = [outer] + [u for u, _ in pairs] + [inner] + [lo for _, lo in pairs][::-1]
        cv2.fillPoly(mask, [np.round(pts[loop]).astype(np.int32)], 255)
    return cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0


def test_blink_and_brows_follow_the_operator(portrait, operator):
    t = settle(portrait, operator)
    frames = ([operator] * 2 + [deform(operator, close_eyes)] * 2 + [operator] * 3
              + [deform(operator, raise_brows)] + [operator] * 2)
    outs = [portrait.process(frame, t + k / 30).image for k, frame in enumerate(frames)]
    rest_img, still_img, blink_img, eyes_back, before_brows, brows, brows_back = (
        outs[0], outs[1], outs[3], outs[6], outs[6], outs[7], outs[9])

    rest = still_mesh(rest_img)
    eyes = eye_region(rest, rest_img.shape[:2])

    def eye_change(img: np.ndarray) -> float:
        return float(np.abs(img.astype(int) - rest_img.astype(int)).max(axis=2)[eyes].mean())

    # Her lids come down: the eyes look different, and the mesh sees them narrower...
    assert eye_change(blink_img) > 12 > 4 > eye_change(still_img)
    assert eye_openness(still_mesh(blink_img)) < 0.92 * eye_openness(rest)
    # ...her brows go up...
    assert brow_height(still_mesh(brows)) > brow_height(still_mesh(before_brows)) + 0.08
    # ...and each comes back when the operator's does: expressions are deltas, not drift.
    assert eye_change(eyes_back) < 6
    assert abs(eye_openness(still_mesh(eyes_back)) - eye_openness(rest)) < 0.05 * eye_openness(rest)
    assert abs(brow_height(still_mesh(brows_back)) - brow_height(still_mesh(before_brows))) < 0.045


def test_open_mouth_shows_an_interior_not_stretched_lips(persona, operator, monkeypatch):
    frame, interior = open_mouth(operator)

    def mouth(f: PortraitFilter) -> tuple[float, float, float]:
        t = settle(f, operator)
        out = f.process(frame, t).image
        pts = still_mesh(out)
        poly = np.zeros((H, W), np.uint8)
        cv2.fillPoly(poly, [np.round(pts[lips_inner_indices()]).astype(np.int32)], 255)
        core = cv2.erode(poly, np.ones((3, 3), np.uint8)) > 0
        lab = cv2.cvtColor(out, cv2.COLOR_BGR2Lab)[core].astype(float)
        openness = float(np.linalg.norm(pts[14] - pts[13]) / np.linalg.norm(pts[308] - pts[78]))
        dark = float((lab[:, 0] < 90).mean()) if len(lab) else 0.0  # throat
        bright = float((lab[:, 0] > 180).mean()) if len(lab) else 0.0  # teeth
        return openness, dark, bright

    with PortraitFilter(persona) as f:
        openness, dark, bright = mouth(f)
    assert openness > 0.12  # her mouth opens visibly
    assert dark > 0.3 and bright > 0.05  # with a throat and teeth in it
    # Control: without the painted interior the opening holds her stretched lips: no teeth.
    monkeypatch.setattr("filters.face.portrait.paint_interior", lambda *a, **k: False)
    with PortraitFilter(persona) as f:
        _, _, bright_off = mouth(f)
    assert bright_off < 0.02


def test_lost_face_holds_fades_then_shows_the_still_portrait(portrait, persona, operator):
    still = cover_fit(persona, (H, W), tuple(still_mesh(persona).mean(axis=0)))
    last = None
    for i in range(3):
        last = portrait.process(moved(operator, i), i / 30)
    t_last = 2 / 30
    blank = np.zeros((H, W, 3), np.uint8)
    held = portrait.process(blank, t_last + 0.3)
    assert held.source == "held" and not held.face_found and np.array_equal(held.image, last.image)
    fading = portrait.process(blank, t_last + 0.6)  # 0.1 s into the 0.3 s fade
    assert fading.source == "portrait" and not fading.face_found
    d_fade = np.abs(fading.image.astype(int) - still.astype(int)).mean()
    d_held = np.abs(last.image.astype(int) - still.astype(int)).mean()
    assert 0.4 * d_held < d_fade < 0.9 * d_held  # between the two pictures, not a cut
    gone = portrait.process(blank, t_last + 1.0)
    assert gone.source == "portrait" and np.array_equal(gone.image, still)

    back = portrait.process(operator, t_last + 1.0 + 1 / 30)
    assert back.source == "converted" and back.face_found
    # Found again: she starts from the still portrait (the resting pose is relearnt), so no jump.
    assert np.abs(back.image.astype(int) - still.astype(int)).mean() < 3


def test_portrait_refuses_a_photo_without_a_face():
    import skimage.data

    coffee = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    with pytest.raises(PersonaError) as err:
        PortraitFilter(coffee)
    assert "photo" in str(err.value)


def test_factory_builds_portrait_mode(persona):
    from engine.persona import Persona
    from filters.factory import face_filter
    from filters.registry import FACE_MODES

    assert "portrait" in FACE_MODES
    f = face_filter(Persona("grace", persona, np.zeros(16000, np.float32)), "portrait")
    try:
        assert isinstance(f, PortraitFilter)
        out = f.process(np.zeros((H, W, 3), np.uint8), 0.0)
        assert out.source == "portrait" and out.image.shape == (H, W, 3)
    finally:
        f.close()


def test_a_small_face_in_a_large_photo_is_framed(persona, operator):
    """A photo where she is small (a wide shot of a room) still shows her face large, not the room."""
    from filters.face.landmarks import face_oval_indices

    canvas = np.full((1200, 1100, 3), (200, 190, 180), np.uint8)
    canvas[150 : 150 + persona.shape[0], 294 : 294 + persona.shape[1]] = persona
    with PortraitFilter(canvas) as f:
        out = f.process(operator, 0.0).image
    width = np.ptp(still_mesh(out)[face_oval_indices()][:, 0])
    assert width > 0.3 * W
    # Control: fitted whole, the same photo would show her face at under a fifth of the picture.
    whole = cover_fit(canvas, (H, W))
    assert np.ptp(still_mesh(whole)[face_oval_indices()][:, 0]) < 0.2 * W
