"""The operator's resting face learnt per head pose: a head turning at rest is not read as expression.

The tracker bends a resting face's mesh as the head turns; a swap that took that bend for expression
carried the operator's features into the persona's face on every turned frame. These tests feed meshes
whose bend is known, at the swap's own learning rates.
"""

from __future__ import annotations

import numpy as np
import pytest

from filters.face.face3d import POSE_POINTS, Pose, canonical, rotation
from filters.face.landmarks import face_oval_indices, feature_indices
from filters.face.resting import RestingFace

FPS = 30.0


def bent(rest: np.ndarray, bend: np.ndarray, yaw: float) -> np.ndarray:
    """What the tracker reports for a resting face turned `yaw` degrees (pose taken off): it bends, more the
    further it turns, and not the same both ways."""
    a = yaw / 30.0
    return rest + bend * (0.6 * a + 0.4 * a * a)


def sweep(seconds: float) -> list[tuple[float, float]]:
    """(yaw, pitch) a frame: the head turning to +-40 degrees and nodding, as an operator does in a call."""
    t = np.arange(int(seconds * FPS)) / FPS
    return list(zip(40.0 * np.sin(2 * np.pi * t / 4.0), 8.0 * np.sin(2 * np.pi * t / 2.7)))


def rates(n: int) -> list[float]:
    """The swap's learning rates: quick over the first frames, then over about four seconds."""
    from filters.face.swap import NEUTRAL_SECONDS, WARM_FRAMES, WARM_RATE

    return [1.0] + [WARM_RATE if k <= WARM_FRAMES else 1.0 / (NEUTRAL_SECONDS * FPS) for k in range(1, n)]


def learnt_over_turns(rest: np.ndarray, bend: np.ndarray, seconds: float = 10.0) -> RestingFace:
    """A resting face learnt, at the swap's rates, from a head turning and nodding at rest."""
    learner = RestingFace()
    poses = sweep(seconds)
    for (yaw, pitch), rate in zip(poses, rates(len(poses))):
        learner.learn(bent(rest, bend, yaw), yaw, pitch, rate)
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


def test_an_expression_at_a_turned_pose_still_shows(faces):
    rest, bend = faces
    learner = learnt_over_turns(rest, bend)
    lips = feature_indices("lips")
    smiling = bent(rest, bend, 30.0)
    smiling[lips, 0] *= 1.15  # the mouth widens
    moved = (smiling - learner.at(30.0, 0.0))[lips, 0]
    wanted = (smiling - bent(rest, bend, 30.0))[lips, 0]
    assert np.abs(moved - wanted).max() < 0.01
    assert np.abs(wanted).max() > 0.03


def test_a_smile_held_while_the_head_barely_moves_is_not_taken_for_rest(faces):
    """A head held nearly still teaches no pose terms worth the name: a smile held for a second while the head
    dips 3 degrees must not be explained away as "the rest at that pitch"."""
    rest, _ = faces
    learner = RestingFace()
    rng = np.random.default_rng(7)
    lips = feature_indices("lips")
    smiling = rest.copy()
    smiling[lips, 0] *= 1.15
    frames = [(rest, *rng.normal(0.0, 1.0, size=2)) for _ in range(90)]  # 3 s at rest, about still
    frames += [(smiling, rng.normal(0.0, 1.0), 3.0 + rng.normal(0.0, 0.3)) for _ in range(30)]  # 1 s smiling
    for (mesh, yaw, pitch), rate in zip(frames, rates(len(frames))):
        learner.learn(mesh, yaw, pitch, rate)
    shown = (smiling - learner.at(0.0, 3.0))[lips, 0]
    wanted = (smiling - rest)[lips, 0]
    # The resting face follows over about 4 s, so a second's smile is a fifth absorbed by the rest itself (as
    # it always was); the pose terms may add little to that (with a weak ridge they took two thirds).
    assert np.abs(shown - wanted).max() < 0.3 * np.abs(wanted).max()


def test_before_any_turn_nothing_is_invented_for_one(faces):
    rest, _ = faces
    learner = RestingFace()
    rng = np.random.default_rng(5)
    for k, rate in enumerate(rates(90)):
        yaw, pitch = rng.normal(0.0, 2.0, size=2)  # a head held still: small turns only
        learner.learn(rest + rng.normal(0.0, 0.002, rest.shape), yaw, pitch, rate)
    # Read far past anything seen: the rest at the largest turn seen, not an extrapolation.
    assert np.linalg.norm(learner.at(45.0, 20.0) - rest, axis=1).max() < 0.02


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
