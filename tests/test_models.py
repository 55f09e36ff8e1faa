"""The model runtime and the neural swap backend, on tiny generated models with the real signatures.

No real weights exist here: tests/tiny_models.py writes kilobyte-sized ONNX files that insightface and
onnxruntime load as they would the real det_10g / w600k_r50 / inswapper_128 / GFPGAN files, so the real
code paths (insightface's SCRFD decoding, alignment, ArcFace, inswapper paste-back) run end to end.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from calls import models_cli
from engine import models
from engine.errors import ModelError, PersonaError
from engine.models import MODELS, check, choose_providers, models_dir, open_session, require, session_provider
from benchmarks import tiny_models

H, W = 480, 640
# insightface's own alignment calls a scikit-image API that is deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")


# ---------------------------------------------------------------------------------------------------
# Folder resolution, checks and sessions


def test_models_folder_order_explicit_then_env_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    for folder in (explicit, env, home / "models"):
        tiny_models.make_arcface(folder / "w600k_r50.onnx")
    monkeypatch.setenv("EVERCALL_HOME", str(home))
    monkeypatch.setenv(models.MODELS_ENV, str(env))
    spec = MODELS["w600k_r50"]

    assert check(spec, models_dir(explicit)).path == explicit / "w600k_r50.onnx"
    assert check(spec, models_dir(None)).path == env / "w600k_r50.onnx"
    monkeypatch.delenv(models.MODELS_ENV)
    assert check(spec, models_dir(None)).path == home / "models" / "w600k_r50.onnx"
    assert check(spec, models_dir(None)).ok


def test_missing_files_raise_one_line_naming_each_file_and_the_fix(tmp_path: Path) -> None:
    tiny_models.make_detector(tmp_path / "det_10g.onnx")
    with pytest.raises(ModelError) as err:
        require(["det_10g", "inswapper_128"], tmp_path)
    text = str(err.value)
    assert "\n" not in text
    assert "inswapper_128.onnx" in text and "det_10g" not in text.split(":")[0]
    assert "InsightFace" in text and f"Save it as {tmp_path / 'inswapper_128.onnx'}" in text

    with pytest.raises(ModelError) as err:
        require(["det_10g", "w600k_r50", "inswapper_128"], tmp_path / "nowhere")
    text = str(err.value)
    assert "\n" not in text
    for name in ("det_10g.onnx", "w600k_r50.onnx", "inswapper_128.onnx"):
        assert name in text
    assert "evercall models check" in text


def test_wrong_input_shape_is_reported_as_a_mismatch(tmp_path: Path) -> None:
    tiny_models.make_arcface(tmp_path / "w600k_r50.onnx", size=128)  # a 128-px recogniser, not ArcFace 112
    result = check(MODELS["w600k_r50"], tmp_path)
    assert result.status == "mismatch"
    line = result.line()
    assert "\n" not in line
    assert "128" in line and "112" in line and "w600k_r50.onnx" in line
    with pytest.raises(ModelError, match="mismatch"):
        open_session(MODELS["w600k_r50"], tmp_path)


def test_inswapper_without_its_identity_map_is_a_mismatch(tmp_path: Path) -> None:
    tiny_models.make_inswapper(tmp_path / "inswapper_128.onnx", with_emap=False)
    result = check(MODELS["inswapper_128"], tmp_path)
    assert result.status == "mismatch" and "512x512" in result.problem


def test_truncated_or_pointer_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "det_10g.onnx").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    result = check(MODELS["det_10g"], tmp_path)
    assert result.status == "unreadable"
    assert "download it again" in result.fix


def test_every_registry_signature_is_satisfiable_and_opens_on_cpu(tmp_path: Path) -> None:
    for spec in MODELS.values():
        tiny_models.make_from_spec(spec, tmp_path / spec.file_name)
        assert check(spec, tmp_path).ok, check(spec, tmp_path).line()
    session = open_session(MODELS["rvc_decoder"], tmp_path)
    assert session_provider(session) == "CPUExecutionProvider"
    assert [i.name for i in session.get_inputs()] == ["phone", "phone_lengths", "pitch", "pitchf", "ds", "rnd"]


def test_providers_are_preferred_tensorrt_then_cuda_then_cpu() -> None:
    offered = ["AzureExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider",
               "TensorrtExecutionProvider"]
    assert choose_providers(offered) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                         "CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider"])[0] == "CUDAExecutionProvider"
    assert choose_providers() == ["CPUExecutionProvider"]  # this machine has no GPU


def test_alternative_file_name_is_found(tmp_path: Path) -> None:
    tiny_models.make_restorer(tmp_path / "GFPGANv1.4.onnx")
    result = check(MODELS["gfpgan_1.4"], tmp_path)
    assert result.ok and result.path.name == "GFPGANv1.4.onnx"


# ---------------------------------------------------------------------------------------------------
# `evercall models list|check`


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser(prog="evercall")
    models_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out.splitlines()


def test_models_check_prints_one_line_per_problem_and_fails(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    tiny_models.make_detector(tmp_path / "det_10g.onnx")
    tiny_models.make_arcface(tmp_path / "w600k_r50.onnx", size=128)  # wrong
    # inswapper_128 missing; the optional restorer missing too

    code, lines = _run_cli(["models", "check", "--models-dir", str(tmp_path), "--backend", "face"], capsys)
    assert code == 1
    assert len(lines) == 3, lines
    by_key = {line.split(":")[0]: line for line in lines}
    assert set(by_key) == {"w600k_r50", "inswapper_128", "gfpgan_1.4"}
    assert "mismatch" in by_key["w600k_r50"]
    assert "missing" in by_key["inswapper_128"] and "inswapper_128.onnx" in by_key["inswapper_128"]
    assert by_key["gfpgan_1.4"].endswith("(optional)")


def test_models_check_passes_without_the_optional_restorer(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tiny_models.write_face_models(tmp_path)
    code, lines = _run_cli(["models", "check", "--models-dir", str(tmp_path), "--backend", "face"], capsys)
    assert code == 0
    assert len(lines) == 2 and lines[0].startswith("gfpgan_1.4: missing") and lines[0].endswith("(optional)")
    assert "all required files present" in lines[1]
    code, lines = _run_cli(["models", "check", "--models-dir", str(tmp_path)], capsys)  # voice too
    assert code == 1
    assert {line.split(":")[0] for line in lines} == {"gfpgan_1.4", "rvc_content_encoder", "rvc_pitch",
                                                       "rvc_decoder"}


def test_models_list_shows_state_path_licence_and_source(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    tiny_models.make_detector(tmp_path / "det_10g.onnx")
    code, lines = _run_cli(["models", "list", "--models-dir", str(tmp_path)], capsys)
    text = "\n".join(lines)
    assert code == 0
    assert lines[0] == f"models folder: {tmp_path} (from --models-dir)"
    assert "det_10g: installed" in text and "inswapper_128: not installed" in text
    assert str(tmp_path / "inswapper_128.onnx") in text
    assert text.count("licence:") == len(MODELS) and text.count("get it:") == len(MODELS)
    assert "non-commercial" in text


# ---------------------------------------------------------------------------------------------------
# The neural swap filter, end to end on the tiny models


def _sample(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib

        path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data/sample_data/grace_hopper.jpg")
        image = cv2.imread(path)
    else:
        import skimage.data

        image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    assert image is not None
    return image


@pytest.fixture(scope="module")
def persona() -> np.ndarray:
    return _sample("grace_hopper")


@pytest.fixture(scope="module")
def operator_frame() -> np.ndarray:
    return operator_in_room()


def operator_in_room() -> np.ndarray:
    """The astronaut's face (200 px) softly pasted into a plain 640x480 room of her skin's mean colour."""
    face = cv2.resize(_sample("astronaut")[0:250, 120:370], (200, 200), interpolation=cv2.INTER_AREA)
    frame = np.empty((H, W, 3), np.uint8)
    frame[:] = face.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    alpha = np.zeros((200, 200), np.float32)
    cv2.circle(alpha, (100, 100), 85, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (31, 31), 10)[..., None]
    roi = frame[140:340, 220:420]
    roi[:] = (alpha * face + (1 - alpha) * roi).astype(np.uint8)
    return frame


@pytest.fixture(scope="module")
def face_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All face models in ONE folder, the restorer included: the filter must not confuse them."""
    return tiny_models.write_face_models(tmp_path_factory.mktemp("models"), restorer=True)


@pytest.fixture(scope="module")
def swapper(persona: np.ndarray, face_models: Path):
    from filters.face.neural import InswapperFilter

    with InswapperFilter(persona, face_models, hold_s=0.5) as f:
        yield f


def _found_in(frame: np.ndarray, photo: np.ndarray) -> float:
    """How well `frame` matches some crop of `photo` scaled to cover the frame (1.0 = exactly)."""
    scale = max(frame.shape[1] / photo.shape[1], frame.shape[0] / photo.shape[0])
    scaled = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
    return float(cv2.matchTemplate(scaled, frame, cv2.TM_CCOEFF_NORMED).max())


def _outside(box: tuple[int, int, int, int], margin: float = 0.25) -> np.ndarray:
    x0, y0, x1, y1 = box
    mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
    mask = np.ones((H, W), bool)
    mask[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx] = False
    return mask


def test_swap_replaces_the_face_and_keeps_the_room(swapper, operator_frame: np.ndarray) -> None:
    before = operator_frame.copy()
    out = swapper.process(operator_frame, 0.0)
    assert np.array_equal(operator_frame, before), "the input frame was modified"
    assert out.face_found and out.source == "converted"
    assert out.image.shape == operator_frame.shape and out.image.dtype == np.uint8
    x0, y0, x1, y1 = swapper.face_box
    # The detected face sits on the pasted face (centre 320, 240), not somewhere in the room.
    assert x0 < 320 < x1 and y0 < 240 < y1
    inner = (slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    change = np.abs(out.image[inner].astype(int) - operator_frame[inner].astype(int)).mean()
    assert change > 30, f"face barely changed ({change:.1f} grey levels)"
    outside = _outside(swapper.face_box)
    assert np.array_equal(out.image[outside], operator_frame[outside]), "pixels away from the face changed"


def test_backend_reports_cpu_provider_here(swapper) -> None:
    assert swapper.provider == "CPUExecutionProvider"
    assert set(swapper.providers.values()) == {"CPUExecutionProvider"}


def test_lost_face_shows_held_frame_then_portrait_never_the_operator(persona: np.ndarray, face_models: Path,
                                                                    operator_frame: np.ndarray) -> None:
    from filters.face.neural import InswapperFilter

    blank = np.zeros_like(operator_frame)  # camera covered: the detector finds nothing
    with InswapperFilter(persona, face_models, hold_s=0.5) as f:
        first = f.process(blank, 0.0)
        assert (first.face_found, first.source) == (False, "portrait")
        # The portrait is the persona photo, scaled to cover the frame (cropped around her face).
        assert first.image.shape == blank.shape
        assert _found_in(first.image, persona) > 0.99

        converted = f.process(operator_frame, 1.0)
        assert converted.source == "converted"
        held = f.process(blank, 1.3)
        assert held.source == "held" and np.array_equal(held.image, converted.image)
        later = f.process(blank, 1.6)
        assert later.source == "portrait" and np.array_equal(later.image, first.image)
        assert f.face_box is None


def test_missing_models_stop_before_insightface_is_touched(persona: np.ndarray, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import insightface.model_zoo

    from filters.face.neural import InswapperFilter

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("insightface was asked to load a model")

    monkeypatch.setattr(insightface.model_zoo, "get_model", boom)
    tiny_models.make_detector(tmp_path / "det_10g.onnx")
    with pytest.raises(ModelError) as err:
        InswapperFilter(persona, tmp_path)
    assert "w600k_r50.onnx" in str(err.value) and "inswapper_128.onnx" in str(err.value)
    assert "det_10g.onnx" not in str(err.value)


def test_persona_photo_without_face_is_refused(face_models: Path) -> None:
    from filters.face.neural import InswapperFilter

    # A square photo of a plain wall with a little sensor noise (square: the tiny detector would take the
    # edge of insightface's letterbox padding for texture).
    noise = np.random.default_rng(0).normal(0, 3, (480, 480, 3))
    flat = np.clip(128 + noise, 0, 255).astype(np.uint8)
    with pytest.raises(PersonaError, match="no face"):
        InswapperFilter(flat, face_models)


def test_restorer_changes_the_face_only_and_runs_every_nth_frame(persona: np.ndarray, face_models: Path,
                                                                 operator_frame: np.ndarray, swapper) -> None:
    from filters.face.neural import InswapperFilter

    plain = swapper.process(operator_frame, 5.0).image
    with InswapperFilter(persona, face_models, restore_every=2) as f:
        outs = [f.process(operator_frame, t / 30).image for t in range(3)]
        box = f.face_box
        assert f.restorer is not None and f.restorer.runs == 2  # frames 0 and 2; frame 1 reused frame 0's
        assert f.providers["gfpgan_1.4"] == "CPUExecutionProvider"
    x0, y0, x1, y1 = box
    centre = (slice((y0 + y1) // 2 - 20, (y0 + y1) // 2 + 20), slice((x0 + x1) // 2 - 20, (x0 + x1) // 2 + 20))
    for out in outs:
        assert np.abs(out[centre].astype(int) - plain[centre].astype(int)).mean() > 30
        assert np.array_equal(out[_outside(box)], plain[_outside(box)])
    # The frame between network runs carries the same correction (same input frame here).
    assert np.abs(outs[1].astype(int) - outs[0].astype(int)).max() <= 1
