"""The operator's resting face learnt per head pose: a head turning at rest is not read as expression.

The tracker bends a resting face's mesh as the head turns; a swap that took that bend for expression
carried the operator's features into the persona's face on every turned frame. These tests feed meshes
whose bend is known.
"""

from __future__ import annotations

import numpy as np
import pytest

from filters.face.face3d import POSE_POINTS, Pose, canonical, rotation
from filters.face.landmarks import face_oval_indices, feature_indices
from filters.face.resting import FPS, RestingFace


def bent(rest: np.ndarray, bend: np.ndarray, yaw: float) -> np.ndarray:
    """What the tracker reports for a resting face turned `yaw` degrees (pose taken off): it bends, more the
    further it turns, and not the same both ways."""
    a = yaw / 30.0
    return rest + bend * (0.6 * a + 0.4 * a * a)


def sweep(seconds: float) -> list[tuple[float, float]]:
    """(yaw, pitch) a frame: the head turning to +-40 degrees and nodding, as an operator does in a call."""
    t = np.arange(int(seconds * FPS)) / FPS
    return list(zip(40.0 * np.sin(2 * np.pi * t / 4.0), 8.0 * np.sin(2 * np.pi * t / 2.7)))


def learnt_over_turns(rest: np.ndarray, bend: np.ndarray, seconds: float = 10.0) -> RestingFace:
    """A resting face learnt from a head turning and nodding at rest."""
    learner = RestingFace()
    poses = sweep(seconds)
    for yaw, pitch in poses:
        learner.learn(bent(rest, bend, yaw), yaw, pitch)
    return learner


@pytest.fixture
def faces() -> tuple[np.ndarray, np.ndarray]:
    """(a resting mesh, the tracker's bend at 30 degrees: 0.05 face widths on the cheeks, nose and brows)."""
    rest = canonical().points[:468].astype(np.float64)
    rng = np.random.default_rng(3)
    bend = np.zeros_like(rest)
    moving = np.setdiff1d(np.arange(468), np.concatenate([POSE_POINTS, face_oval_indices()]))
    direction = rng.normal(size=(len(moving), 3))
    bend[moving] = 0.05 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    return rest, bend


def test_a_head_turning_at_rest_is_learnt_as_rest_at_each_pose(faces):
    rest, bend = faces
    learner = learnt_over_turns(rest, bend)
    for yaw in (-35.0, -15.0, 20.0, 35.0):
        error = np.linalg.norm(learner.at(yaw, 0.0) - bent(rest, bend, yaw), axis=1).max()
        frontal_error = np.linalg.norm(learner.at(0.0, 0.0) - bent(rest, bend, yaw), axis=1).max()
        assert error < 0.01, (yaw, error)  # under the swap's 0.03 dead zone
        if yaw >= 30:  # what a rest learnt from the front alone would have called expression
            assert frontal_error > 0.04


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_a_smile_held_for_a_second_still_shows(faces, yaw):
    """A smile held for a second, at the front while the head dips 3 degrees or turned 30 degrees, is not
    explained away as "the rest at that pose": the pose terms learn from turns, not from a degree of wobble."""
    rest, bend = faces
    learner = learnt_over_turns(rest, bend) if yaw else RestingFace()
    rng = np.random.default_rng(7)
    lips = feature_indices("lips")
    if not yaw:
        for _ in range(90):  # 3 s at rest, about still
            learner.learn(rest, *rng.normal(0.0, 1.0, size=2))
    pitch = 0.0 if yaw else 3.0
    resting = bent(rest, bend, yaw)
    smiling = resting.copy()
    smiling[lips, 0] *= 1.15  # the mouth widens
    for _ in range(30):
        learner.learn(smiling, yaw + rng.normal(0.0, 0.3), pitch + rng.normal(0.0, 0.3))
    shown = (smiling - learner.at(yaw, pitch))[lips, 0]
    wanted = (smiling - resting)[lips, 0]
    assert np.abs(wanted).max() > 0.03
    # The resting face follows over about 4 s, so a second's smile is a fifth absorbed by the rest itself (as
    # it always was); the pose terms may add little to that (with a weak ridge they took two thirds).
    assert np.abs(shown - wanted).max() < 0.3 * np.abs(wanted).max()


def test_a_turn_held_for_a_while_does_not_wear_out_the_front(faces):
    """Twenty seconds looking at a side monitor: back at the front, the rest there is still the front's (a
    plain forgetting fit had moved 80% of the way to the turned mesh)."""
    rest, bend = faces
    learner = learnt_over_turns(rest, bend)
    for _ in range(int(20 * FPS)):
        learner.learn(bent(rest, bend, 35.0), 35.0, 0.0)
    assert np.linalg.norm(learner.at(0.0, 0.0) - rest, axis=1).max() < 0.01
    assert np.linalg.norm(learner.at(35.0, 0.0) - bent(rest, bend, 35.0), axis=1).max() < 0.01


def test_poses_not_seen_yet_are_read_at_the_edge_of_those_seen(faces):
    """Turned only to his right so far, and nodded a little: turning left, or further, or nodding more gets
    the rest at the nearest pose seen, never an extrapolated bend."""
    rest, bend = faces
    learner = RestingFace()
    for k, yaw in enumerate(np.linspace(0.0, 20.0, 150)):
        learner.learn(bent(rest, bend, yaw), yaw, 5.0 * np.sin(k / 7.0))
    pitch_hi = max(5.0 * np.sin(k / 7.0) for k in range(150))
    assert np.array_equal(learner.at(-40.0, 0.0), learner.at(0.0, 0.0))
    assert np.array_equal(learner.at(45.0, 20.0), learner.at(20.0, pitch_hi))
    assert not np.allclose(learner.at(20.0, 0.0), learner.at(0.0, 0.0))  # the turn it saw was learnt


def test_a_frame_with_no_pose_teaches_nothing(faces):
    rest, bend = faces
    learner = learnt_over_turns(rest, bend)
    before = learner.at(20.0, 0.0)
    learner.learn(rest, float("nan"), 0.0)
    learner.learn(np.full_like(rest, np.nan), 10.0, 0.0)
    assert np.array_equal(learner.at(20.0, 0.0), before)


def test_the_swap_keeps_her_features_on_a_turning_head_at_rest(faces):
    """Through the swap: an operator whose tracked mesh bends as he turns, at rest; once he has turned a few
    times her face at a turned pose is her own shape (below the forehead), not bent by his tracker."""
    from filters.face.swap import FaceSwapFilter
    import matplotlib
    import cv2
    import os

    rest, bend = faces
    photo = cv2.imread(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data/sample_data/grace_hopper.jpg"))
    swap = FaceSwapFilter(photo)
    try:
        inner = np.setdiff1d(np.flatnonzero(swap._shape_weight[:, 0] >= 1.0), face_oval_indices())
        for yaw, pitch in sweep(5.0):
            pose = Pose(150.0, rotation(yaw, pitch), np.array([320.0, 240.0, 0.0]))
            face = swap.target(pose.apply(bent(rest, bend, yaw)))
        her = swap.likeness.shape
        assert yaw > 30  # the sweep ends turned (the way his tracker bends most)
        assert np.linalg.norm(pose.undo(face)[inner] - her[inner], axis=1).max() < 0.03
    finally:
        swap.close()
