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
from benchmarks.face_scenes import open_mouth, still_mesh, with_cup, with_hand, yawed  # noqa: F401 (shared)
from benchmarks.identity import SAME_PERSON, distance, face_descriptor

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


# --- occluders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("occlude", [with_cup, with_hand], ids=["cup", "hand"])
def test_an_occluder_stays_in_front_of_the_persona(swap, operator, occlude):
    frame, mask = occlude(operator)
    t = 0.0
    for _ in range(3):  # the operator's face, then the hand or cup comes up
        clear = swap.process(operator, t).image
        t += 1 / 30
    for _ in range(3):
        out = swap.process(frame, t)
        t += 1 / 30
    assert out.source == "converted"
    core = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    kept = np.abs(out.image.astype(int) - frame.astype(int)).max(axis=2)[core] <= 12
    assert kept.mean() > 0.97  # the object as the camera saw it, not skin painted over it

    # Where the face is not covered the persona still shows, in her usual colours (an occluder must not
    # tint her: a green glove skewing the colour match would turn her face green).
    rows, cols = face_box(operator)
    visible = np.zeros(mask.shape, bool)
    visible[rows, cols] = True
    visible &= cv2.dilate(mask, np.ones((31, 31), np.uint8)) == 0
    assert np.abs(out.image.astype(int) - operator.astype(int)).max(axis=2)[visible].mean() > 20
    lab_out = cv2.cvtColor(out.image, cv2.COLOR_BGR2Lab)[visible].astype(float).mean(axis=0)
    lab_clear = cv2.cvtColor(clear, cv2.COLOR_BGR2Lab)[visible].astype(float).mean(axis=0)
    assert np.abs(lab_out - lab_clear)[1:].max() < 3  # chroma: no tint
    assert abs(lab_out[0] - lab_clear[0]) < 8  # lightness: the colour match sees less skin, not other skin


def test_a_clear_face_has_no_occluder(operator):
    """The operator's own eyes, brows, lips and teeth are not taken for something in front of the face."""
    from filters.face.landmarks import face_oval_indices
    from filters.face.occlusion import OccluderDetector
    from filters.face.swap import OCCLUSION_REACH, _grown_box

    detector = OccluderDetector()
    frames = [moved(operator, i) for i in range(6)] + [open_mouth(operator)[0]]
    with FaceMesher(still=False) as mesher:
        for frame in frames:
            pts = mesher(frame)[:468]
            box = _grown_box(pts[face_oval_indices()], OCCLUSION_REACH, frame.shape[:2])
            assert detector(frame, pts, box) is None


# --- lost and found -------------------------------------------------------------------------------


def test_lost_face_fades_to_the_portrait_and_back(persona, operator):
    fade = 0.3
    with FaceSwapFilter(persona, hold_s=0.5, fade_s=fade) as swap:
        last = swap.process(operator, 0.0)
        portrait = swap.process(np.zeros((H, W, 3), np.uint8), 5.0).image  # the still portrait itself
        last = swap.process(operator, 10.0)  # back: (a fade from the portrait starts; run it through)
        for k in range(1, 12):
            last = swap.process(operator, 10.0 + k / 30)
        assert last.source == "converted"
        t0 = 10.0 + 11 / 30
        blank = np.zeros((H, W, 3), np.uint8)
        rows, cols = face_box(operator)

        def to(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.abs(a.astype(int) - b.astype(int)).mean())

        shown = []
        for dt in np.arange(1, 30) / 30:  # one second without a face
            out = swap.process(blank, t0 + dt)
            assert not out.face_found
            shown.append((dt, out))
        for dt, out in shown:
            if dt <= 0.5:
                assert out.source == "held" and np.array_equal(out.image, last.image)
            elif dt >= 0.5 + fade:
                assert out.source == "portrait" and np.array_equal(out.image, portrait)
            else:  # a crossfade: between the two pictures, nearer the portrait as time goes on
                w = (dt - 0.5) / fade
                assert out.source == "portrait"
                assert abs(to(out.image, last.image) - w * to(portrait, last.image)) < 3
        # The whole way, the operator's own face never shows.
        for _, out in shown:
            assert to(out.image[rows, cols], operator[rows, cols]) > 15

        # Found again: a fade in from the portrait, not a cut, and never the operator's face either.
        t1 = t0 + 1.0
        back = [swap.process(operator, t1 + k / 30) for k in range(1, 13)]
        assert all(b.source == "converted" and b.face_found for b in back)
        steps = [to(back[0].image, portrait)] + [to(b.image, a.image) for a, b in zip(back, back[1:])]
        assert max(steps) < 0.5 * to(back[-1].image, portrait)  # no single jump carries the change
        assert to(back[-1].image, back[-2].image) < 3  # settled on the live swap
        for b in back:
            assert to(b.image[rows, cols], operator[rows, cols]) > 15


# --- head turns -----------------------------------------------------------------------------------


def test_head_turns_up_to_45_degrees_without_tearing(swap, operator):
    from filters.face.landmarks import face_oval_indices

    def masks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inside the face, away from its edge and the mouth; a band just outside the face, beside and
        above it: below the jaw is his neck, which the swap reshapes at every pose, not the background)."""
        pts = still_mesh(frame)
        width = int(np.ptp(pts[face_oval_indices()][:, 0]))
        oval = np.zeros((H, W), np.uint8)
        cv2.fillPoly(oval, [np.round(pts[face_oval_indices()]).astype(np.int32)], 255)
        mouth = np.zeros((H, W), np.uint8)
        cv2.fillPoly(mouth, [np.round(pts[lips_inner_indices()]).astype(np.int32)], 255)
        inner = (cv2.erode(oval, np.ones((width // 10 | 1,) * 2, np.uint8)) > 0) & (
            cv2.dilate(mouth, np.ones((9, 9), np.uint8)) == 0)
        band = (cv2.dilate(oval, np.ones((int(0.2 * width) | 1,) * 2, np.uint8)) > 0) & (
            cv2.dilate(oval, np.ones((int(0.06 * width) | 1,) * 2, np.uint8)) == 0)
        band[int(pts[152, 1] - 0.1 * width):] = False
        return inner, band

    t = 0.0
    for _ in range(3):
        frontal = swap.process(operator, t).image
        t += 1 / 30
    inner0, _ = masks(operator)
    ab0 = cv2.cvtColor(frontal, cv2.COLOR_BGR2Lab)[inner0][:, 1:].astype(float)
    lo, hi = np.percentile(ab0, 0.5, axis=0) - 6, np.percentile(ab0, 99.5, axis=0) + 6
    for degrees in (30, 45, -30, -45):
        frame = yawed(operator, degrees)
        for _ in range(4):
            out = swap.process(frame, t)
            t += 1 / 30
        assert out.source == "converted"
        inner, band = masks(frame)
        lab = cv2.cvtColor(out.image, cv2.COLOR_BGR2Lab).astype(float)
        face = lab[inner]
        # No holes: every face pixel is painted (none black, none left as the operator's)...
        assert (out.image[inner].max(axis=1) < 20).mean() == 0
        assert (np.abs(out.image.astype(int) - frame.astype(int)).max(axis=2)[inner] == 0).mean() < 0.01
        # ...and no streaks of hair, background or glasses frame dragged across it: her colours only.
        assert ((face[:, 1:] < lo) | (face[:, 1:] > hi)).any(axis=1).mean() < 0.01
        # Her face is posed in 3-D, not forced flat onto the turned head: no skin spills past its
        # silhouette over the background beside it.
        lab_in = cv2.cvtColor(frame, cv2.COLOR_BGR2Lab).astype(float)
        skin = np.median(face[:, 1:], axis=0)
        skin_out = np.linalg.norm(lab[..., 1:] - skin, axis=2) < 6
        skin_in = np.linalg.norm(lab_in[..., 1:] - skin, axis=2) < 6
        changed = np.abs(lab - lab_in).max(axis=2) > 25
        assert (band & skin_out & ~skin_in & changed).sum() / band.sum() < 0.012


def test_a_raised_brow_still_moves_her_brow_but_the_meshs_wander_does_not(swap):
    """The swap drops what the tracker's mesh wanders at rest (under 0.03 face widths), which would carry
    his features into hers, but a brow raised against its eye (grief and surprise live in the brows) still
    moves hers in full; the same small move of brow and eye together (the wander) does not."""
    from filters.face.landmarks import feature_indices

    rest = swap._canon.points[:468].astype(np.float64)
    brow, eye = feature_indices("left_eyebrow"), feature_indices("left_eye")
    raised = rest.copy()
    raised[brow, 1] -= 0.03  # a brow raise of 0.03 face widths, the eye where it was
    moved = swap._expression(raised, rest)[brow, 1]
    assert np.allclose(moved, -0.03), moved
    wander = rest.copy()
    wander[np.union1d(brow, eye), 1] -= 0.02  # brow and eye drift together: the mesh, not the face
    assert np.allclose(swap._expression(wander, rest)[brow], 0.0)
