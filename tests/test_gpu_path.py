"""The GPU-ready face path, checked on the CPU: the torch compositor against OpenCV, and the neural
filter's IO binding and detect-every-N tracking on the tiny generated models.

No GPU exists here: the torch code runs on the CPU device and the ONNX sessions on the CPU provider.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from filters.face import warp as warp_mod
from filters.face.blend import composite
from filters.face.gpu import TorchCompositor
from benchmarks import tiny_models
from tests.test_models import operator_frame, persona  # noqa: F401 (fixtures, shared)

pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")


def _astronaut() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def comp() -> TorchCompositor:
    return TorchCompositor("cpu")


# ---------------------------------------------------------------------------------------------------
# TorchCompositor


def test_default_device_follows_torch() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    c = TorchCompositor()
    assert c.device.type == expected
    assert c.blend_dtype == (torch.float16 if expected == "cuda" else torch.float32)


def test_layout_round_trip_is_exact(comp: TorchCompositor) -> None:
    image = _astronaut()[:64, :80]
    t = comp.to_device(image)
    assert t.shape == (64, 80, 3) and t.dtype == torch.uint8
    back = comp.to_numpy(t)
    assert back.dtype == np.uint8 and np.array_equal(back, image)


def test_warp_matches_cv2_remap_on_a_real_image(comp: TorchCompositor) -> None:
    src = _astronaut()[0:300, 100:400]  # the face and helmet: sharp edges and smooth skin
    h, w = 200, 240
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # A rotation, a scale and a ripple, reaching past the source edges (border replication is tested too).
    a = np.deg2rad(12.0)
    map_x = (np.cos(a) * xs - np.sin(a) * ys) * 1.17 + 30 + 3.3 * np.sin(ys / 9.0)
    map_y = (np.sin(a) * xs + np.cos(a) * ys) * 1.17 - 15 + 2.7 * np.cos(xs / 7.0)
    map_x, map_y = map_x.astype(np.float32), map_y.astype(np.float32)
    expected = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    got = comp.to_numpy(comp.warp(comp.to_device(src), map_x, map_y))
    assert got.shape == expected.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"max difference {diff.max()}"


def test_warp_from_triangle_affines_matches_warp_face(comp: TorchCompositor) -> None:
    src = _astronaut()[0:300, 100:400]
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.linspace(20, 280, 5), np.linspace(20, 280, 5)), -1).reshape(-1, 2)
    src_pts = grid.astype(np.float64)
    dst_pts = src_pts + rng.normal(0, 6, src_pts.shape)
    tris = warp_mod.triangulate(dst_pts)
    patch, mask, box = warp_mod.warp_face(src, src_pts, dst_pts, tris, (300, 300))
    # The same rasterisation warp_face does, then the maps built on the device.
    x0, y0, x1, y1 = box
    mats, ok = warp_mod._affines(dst_pts, src_pts, tris)
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    local = np.round((dst_pts - (x0, y0)) * 16).astype(np.int32)
    for t in np.flatnonzero(ok):
        cv2.fillConvexPoly(ids, local[tris[t]], int(t), lineType=cv2.LINE_8, shift=4)
    map_x, map_y = comp.maps_from_affines(ids, mats, (x0, y0))
    got = comp.to_numpy(comp.warp(comp.to_device(src), map_x, map_y))
    inside = mask > 0
    diff = np.abs(got.astype(int) - patch.astype(int))[inside]
    assert diff.max() <= 1, f"max difference {diff.max()}"


def test_blend_matches_numpy_composite(comp: TorchCompositor) -> None:
    frame = _astronaut()[:240, :320].copy()
    rng = np.random.default_rng(0)
    box = (40, 30, 200, 190)
    patch = _astronaut()[200:360, 300:460].copy()
    alpha = np.zeros((160, 160), np.float32)
    cv2.circle(alpha, (80, 80), 60, 1.0, -1)
    alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), 12) + rng.uniform(-0.05, 0.05, alpha.shape), 0, 1)
    alpha = alpha.astype(np.float32)
    expected = frame.copy()
    composite(expected, patch, alpha, box)
    t = comp.to_device(frame)
    out = comp.blend(t, comp.to_device(patch), alpha, box)
    assert out is t
    got = comp.to_numpy(out)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"max difference {diff.max()}"
    outside = np.ones(frame.shape[:2], bool)
    outside[30:190, 40:200] = False
    assert np.array_equal(got[outside], frame[outside])
    with pytest.raises(ValueError):
        comp.blend(t, comp.to_device(patch[:10]), alpha, box)


# ---------------------------------------------------------------------------------------------------
# The neural filter: IO binding and detection every N frames (tiny models, CPU provider)



@pytest.fixture(scope="module")
def face_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.write_face_models(tmp_path_factory.mktemp("gpu_models"))


def _count_detections(f) -> list[int]:
    calls = [0]
    real = f._det.detect

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    f._det.detect = counted
    return calls


def _inner_change(out: np.ndarray, frame: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    qx, qy = (x1 - x0) // 4, (y1 - y0) // 4
    inner = (slice(y0 + qy, y1 - qy), slice(x0 + qx, x1 - qx))
    return float(np.abs(out[inner].astype(int) - frame[inner].astype(int)).mean())


def test_detector_runs_every_third_frame_and_the_face_is_still_swapped(
        persona: np.ndarray, face_models: Path, operator_frame: np.ndarray) -> None:
    from filters.face.neural import InswapperFilter

    with InswapperFilter(persona, face_models, detect_every=3) as f:
        calls = _count_detections(f)
        for i in range(9):
            frame = np.roll(operator_frame, i % 2, axis=1)  # a little camera jitter, well under the threshold
            out = f.process(frame, i / 30)
            assert out.face_found and out.source == "converted"
            assert _inner_change(out.image, frame, f.face_box) > 30
        assert calls[0] == 3 and f.detections == 3

    with InswapperFilter(persona, face_models, detect_every=1) as f:
        calls = _count_detections(f)
        for i in range(9):
            f.process(operator_frame, i / 30)
        assert calls[0] == 9


def test_a_big_change_in_the_face_box_forces_a_detection(persona: np.ndarray, face_models: Path,
                                                         operator_frame: np.ndarray) -> None:
    from filters.face.neural import InswapperFilter

    with InswapperFilter(persona, face_models, detect_every=3, hold_s=0.5) as f:
        calls = _count_detections(f)
        assert f.process(operator_frame, 0.0).source == "converted"
        covered = f.process(np.zeros_like(operator_frame), 1 / 30)  # camera covered on the very next frame
        assert calls[0] == 2 and covered.source == "held" and not covered.face_found
        with pytest.raises(ValueError):
            InswapperFilter(persona, face_models, detect_every=0)


def test_io_binding_gives_the_same_output_as_plain_run(persona: np.ndarray, face_models: Path,
                                                       operator_frame: np.ndarray) -> None:
    from filters.face.neural import InswapperFilter

    outs = {}
    for bound in (True, False):
        with InswapperFilter(persona, face_models, io_binding=bound, detect_every=1) as f:
            session = f.swapper_session
            assert session.binding_active is bound and session.device == "cpu"
            outs[bound] = [f.process(np.roll(operator_frame, i, axis=0), i / 30).image for i in range(3)]
            assert session.bound_runs == (3 if bound else 0)
            assert f.provider == "CPUExecutionProvider"  # the wrapper still answers get_providers()
    for a, b in zip(outs[True], outs[False]):
        assert np.array_equal(a, b)


def test_bound_session_reuses_buffers_but_returns_independent_arrays(face_models: Path) -> None:
    import onnxruntime

    from filters.face.neural import BoundSession

    plain = onnxruntime.InferenceSession(str(face_models / "inswapper_128.onnx"),
                                         providers=["CPUExecutionProvider"])
    bound = BoundSession(plain)
    rng = np.random.default_rng(0)
    feeds = [{"target": rng.random((1, 3, 128, 128), dtype=np.float32),
              "source": rng.normal(size=(1, 512)).astype(np.float32)} for _ in range(2)]
    first = bound.run(None, feeds[0])[0]
    second = bound.run(["output"], feeds[1])[0]
    assert np.array_equal(first, plain.run(None, feeds[0])[0])  # not overwritten by the second call
    assert np.array_equal(second, plain.run(None, feeds[1])[0])
    assert bound.bound_runs == 2
    # A shape the binding was not made for goes through the plain run.
    odd = {"target": feeds[0]["target"][:, :, :64], "source": feeds[0]["source"]}
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    with pytest.raises(InvalidArgument):
        bound.run(None, odd)  # the model itself refuses it: proof it reached session.run, not the binding
    assert bound.bound_runs == 2
