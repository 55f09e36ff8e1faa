"""The embedded swap mode as the far end sees it: whose face is shown, and what shows when it is lost.

Persona: matplotlib's Grace Hopper photo. Operator: scikit-image's astronaut in 640x480 frames. Identity
is judged by dlib's descriptor (tests/identity.py), which the pipeline never uses.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from engine.errors import PersonaError
from filters.face.landmarks import FaceMesher, lips_inner_indices
from filters.face.swap import FaceSwapFilter
from filters.face.warp import triangulate, warp_face
from tests.identity import SAME_PERSON, distance, face_descriptor

H, W = 480, 640


@pytest.fixture(scope="module")
def persona() -> np.ndarray:
    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data/sample_data/grace_hopper.jpg")
    photo = cv2.imread(path)
    assert photo is not None
    return photo


@pytest.fixture(scope="module")
def operator() -> np.ndarray:
    """The astronaut's head and shoulders filling a 640x480 frame (face about 150 px wide)."""
    import skimage.data

    astro = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(astro[0:300, 30:430], (W, H), interpolation=cv2.INTER_CUBIC)


def moved(frame: np.ndarray, i: int) -> np.ndarray:
    """Frame `i` of a small head motion: up to 5 degrees of roll and 12 px of shift."""
    m = cv2.getRotationMatrix2D((W / 2, H * 0.4), 5.0 * np.sin(i * 1.3), 1.0 + 0.03 * np.cos(i))
    m[:, 2] += (12.0 * np.sin(i * 0.7), 8.0 * np.cos(i * 0.9))
    return cv2.warpAffine(frame, m, (W, H), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture
def swap(persona):
    f = FaceSwapFilter(persona, hold_s=0.5)
    yield f
    f.close()


def face_box(frame: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """Rows/columns of the face in a frame (grown by `margin` px), from an independent still mesh."""
    with FaceMesher(still=True) as mesher:
        pts = mesher(frame)
    assert pts is not None
    (x0, y0), (x1, y1) = pts.min(axis=0).astype(int) - margin, pts.max(axis=0).astype(int) + margin
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def test_output_shows_the_persona_not_the_operator(swap, persona, operator):
    persona_d, operator_d = face_descriptor(persona), face_descriptor(operator)
    assert distance(persona_d, operator_d) > 0.6  # the two really are different people

    judged, closer = 0, 0
    for i in range(8):
        frame = moved(operator, i)
        before = frame.copy()
        out = swap.process(frame, i / 30)
        assert out.image.shape == frame.shape and out.image.dtype == np.uint8
        assert out.face_found and out.source == "converted"
        assert np.array_equal(frame, before)  # the caller's frame is not modified
        d = face_descriptor(out.image)
        if d is not None:
            judged += 1
            closer += distance(d, persona_d) < distance(d, operator_d)
    assert judged >= 6
    assert closer >= 0.9 * judged


def test_operator_background_and_hair_stay(swap, operator):
    """Only the head changes: the room and the operator's clothes beyond it are left as they were.

    The head outline itself is reshaped toward the persona's, within a ring RING_SCALE times the face's size.
    """
    from filters.face.reshape import RING_SCALE

    out = swap.process(operator, 0.0).image
    rows, cols = face_box(operator, margin=0)
    cy, cx = (rows.start + rows.stop) / 2, (cols.start + cols.stop) / 2
    hy, hx = (rows.stop - rows.start) / 2 * RING_SCALE + 4, (cols.stop - cols.start) / 2 * RING_SCALE + 4
    ring_rows = slice(max(int(cy - hy), 0), int(cy + hy) + 1)
    ring_cols = slice(max(int(cx - hx), 0), int(cx + hx) + 1)
    changed = np.abs(out.astype(int) - operator.astype(int)).max(axis=2) > 0
    inside = changed[rows, cols].mean()
    outside = changed.sum() - changed[ring_rows, ring_cols].sum()
    assert inside > 0.5
    assert outside == 0


def test_persona_follows_the_operators_lighting(swap, operator):
    """A darker room gives a darker persona face, close to the operator's own face brightness."""
    rows, cols = face_box(operator)
    dark = cv2.convertScaleAbs(operator, alpha=0.55)
    bright_out = swap.process(operator, 0.0).image
    dark_out = swap.process(dark, 1 / 30).image

    def face_l(img: np.ndarray) -> float:
        return float(cv2.cvtColor(img[rows, cols], cv2.COLOR_BGR2Lab)[..., 0].mean())

    assert face_l(dark_out) < face_l(bright_out) - 25
    assert abs(face_l(dark_out) - face_l(dark)) < 10
    assert abs(face_l(bright_out) - face_l(operator)) < 10


def open_mouth(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The operator with the jaw dropped and a mouth interior (upper and lower teeth, dark throat) painted in.

    Returns the frame and a mask of the painted interior, shrunk so the lip edge is not counted.
    """
    with FaceMesher(still=True) as mesher:
        pts = mesher(frame)[:468]
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


def test_open_mouth_shows_operators_teeth_under_persona_lips(persona, operator, monkeypatch):
    frame, interior = open_mouth(operator)
    assert interior.sum() > 200

    def mouth_error(f: FaceSwapFilter) -> float:
        out = f.process(frame, 0.0)
        assert out.source == "converted"
        return float(np.abs(out.image.astype(int) - frame.astype(int)).max(axis=2)[interior].mean())

    # Shape transfer off: it moves the whole mouth toward the persona's proportions, and this test compares
    # the mouth interior pixel for pixel with the operator's.
    with FaceSwapFilter(persona, shape_strength=0.0) as f:
        kept = mouth_error(f)
    # Control: with the cut-out disabled the persona's closed lips are stretched over the opening.
    monkeypatch.setattr("filters.face.swap.mouth_cut_weight", lambda openness: 0.0)
    with FaceSwapFilter(persona, shape_strength=0.0) as f:
        stretched = mouth_error(f)
    assert kept < 10  # the operator's teeth and mouth, as the camera saw them
    assert stretched > 40


def test_photo_without_a_face_is_refused():
    import skimage.data

    coffee = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    with pytest.raises(PersonaError) as err:
        FaceSwapFilter(coffee)
    assert "photo" in str(err.value) and "\n" not in str(err.value)


def test_photo_with_a_tiny_face_is_refused(persona):
    tiny = cv2.resize(persona, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # face about 55 px
    with pytest.raises(PersonaError) as err:
        FaceSwapFilter(tiny)
    assert "photo" in str(err.value) and "100 px" in str(err.value)


def test_portrait_before_any_face_was_seen(swap, persona):
    out = swap.process(np.zeros((H, W, 3), np.uint8), 0.0)
    assert out.source == "portrait" and not out.face_found
    assert out.image.shape == (H, W, 3) and out.image.dtype == np.uint8
    d = face_descriptor(out.image)
    assert d is not None and distance(d, face_descriptor(persona)) < SAME_PERSON


def test_lost_face_holds_then_shows_portrait_never_the_operator(swap, persona, operator):
    rng = np.random.default_rng(0)
    last = None
    for i in range(3):
        last = swap.process(moved(operator, i), i / 30)
        assert last.source == "converted"
    t_last = 2 / 30
    blank = np.zeros((H, W, 3), np.uint8)
    noise = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)

    held = [swap.process(f, t_last + dt) for f, dt in ((blank, 0.1), (noise, 0.3), (blank, 0.49))]
    for out in held:
        assert out.source == "held" and not out.face_found
        assert np.array_equal(out.image, last.image)

    after = [swap.process(f, t_last + dt) for f, dt in ((noise, 0.55), (blank, 2.0))]
    rows, cols = face_box(operator)
    for out in after:
        assert out.source == "portrait" and not out.face_found
        # The portrait, not the camera: far from the operator's frame where their face was.
        assert np.abs(out.image[rows, cols].astype(int) - operator[rows, cols].astype(int)).mean() > 30
        assert np.abs(out.image.astype(int) - noise.astype(int)).mean() > 30
    d = face_descriptor(after[-1].image)
    assert d is not None and distance(d, face_descriptor(persona)) < SAME_PERSON

    back = swap.process(operator, t_last + 2.1)
    assert back.source == "converted" and back.face_found
