"""The built-in demo material: a persona that is nobody, its voice, and an animated operator clip.

The assets are built once into a temporary cache for the whole module; the checks then read them back the
way the rest of the product would (OpenCV, PyAV, soundfile, MediaPipe, dlib).
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from engine import demo
from engine.audio_io import read_audio
from engine.demo import DemoAssets, demo_assets, demo_cache_dir
from filters.face.landmarks import FaceMesher
from tests.identity import DIFFERENT_PEOPLE, SAME_PERSON, distance, face_descriptor


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> DemoAssets:
    return demo_assets(tmp_path_factory.mktemp("demo-cache"))


@pytest.fixture(scope="module")
def photo(assets: DemoAssets) -> np.ndarray:
    image = cv2.imread(str(assets.persona_dir / "photo.png"))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def clip_frames(assets: DemoAssets) -> list[np.ndarray]:
    with av.open(str(assets.operator_clip)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def source_descriptors() -> dict[str, np.ndarray]:
    """dlib descriptors of the sample faces the composite was averaged from."""
    found = {}
    for face in demo.source_faces():
        d = face_descriptor(face.image, upsample=2)
        assert d is not None, f"dlib finds no face in source {face.name}"
        found[face.name] = d
    return found


def test_files_exist_and_nothing_half_written_is_left(assets: DemoAssets) -> None:
    assert (assets.persona_dir / "photo.png").is_file()
    assert (assets.persona_dir / "voice.wav").is_file()
    assert assets.operator_clip.is_file() and assets.operator_clip.suffix == ".mp4"
    assert assets.operator_photo.is_file()
    root = assets.operator_clip.parent
    assert not list(root.glob(".build-*")), "temporary build folders were left behind"
    assert sorted(p.name for p in assets.persona_dir.iterdir()) == ["photo.png", "voice.wav"]


def test_persona_photo_shows_exactly_one_face(photo: np.ndarray) -> None:
    import dlib
    import mediapipe as mp

    assert photo.shape == (demo.PHOTO_SIZE, demo.PHOTO_SIZE, 3)
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as det:
        assert len(det.process(rgb).detections or []) == 1
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=3) as mesh:
        assert len(mesh.process(rgb).multi_face_landmarks or []) == 1
    with FaceMesher(still=True) as mesher:
        assert mesher(photo) is not None
    assert len(dlib.get_frontal_face_detector()(rgb, 1)) == 1


def test_persona_is_not_the_operator(assets: DemoAssets, photo: np.ndarray) -> None:
    operator = cv2.imread(str(assets.operator_photo))
    assert operator is not None and operator.shape == (demo.CLIP_HEIGHT, demo.CLIP_WIDTH, 3)
    a, b = face_descriptor(photo), face_descriptor(operator)
    assert a is not None and b is not None
    assert distance(a, b) > DIFFERENT_PEOPLE


def test_persona_is_a_composite_of_nobody(
    photo: np.ndarray, source_descriptors: dict[str, np.ndarray]
) -> None:
    """Measured: 0.57-0.75 to each source (same person is under 0.3), 0.43 to the sources' centroid,
    where each source itself is 0.49-0.55 from it: a mix of them that is none of them."""
    assert {"grace_hopper", "tom_hanks"} <= set(source_descriptors)
    assert len(source_descriptors) >= 5
    composite = face_descriptor(photo)
    assert composite is not None
    to_sources = {name: distance(composite, d) for name, d in source_descriptors.items()}
    assert min(to_sources.values()) > SAME_PERSON + 0.15, to_sources
    centroid = np.mean(list(source_descriptors.values()), axis=0)
    to_centroid = distance(composite, centroid)
    sources_to_centroid = [distance(d, centroid) for d in source_descriptors.values()]
    assert to_centroid < min(sources_to_centroid), (to_centroid, sources_to_centroid)


def test_persona_voice_is_16k_mono_and_long_enough(assets: DemoAssets) -> None:
    info = sf.info(str(assets.persona_dir / "voice.wav"))
    assert info.samplerate == 16000 and info.channels == 1
    assert 15.0 <= info.duration <= 30.0
    samples, _ = read_audio(assets.persona_dir / "voice.wav")
    assert np.sqrt(np.mean(samples**2)) > 0.02  # speech, not silence


def test_clip_is_640x480_h264_at_30fps_with_a_face_throughout(
    assets: DemoAssets, clip_frames: list[np.ndarray]
) -> None:
    with av.open(str(assets.operator_clip)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert video.average_rate == 30
        audio = container.streams.audio[0]
        assert audio.codec_context.name in ("aac", "opus")
        assert audio.rate == 48000
    assert 7.0 * 30 <= len(clip_frames) <= 10.0 * 30
    assert all(f.shape == (480, 640, 3) for f in clip_frames)
    with FaceMesher(still=True) as mesher:
        sampled = clip_frames[::6]
        found = sum(mesher(f) is not None for f in sampled)
    assert found == len(sampled)


def test_clip_audio_lasts_as_long_as_the_video(assets: DemoAssets, clip_frames: list[np.ndarray]) -> None:
    samples, rate = read_audio(assets.operator_clip)
    assert rate == 48000
    assert abs(len(samples) / rate - len(clip_frames) / 30) <= 1 / 30


def test_clip_head_moves_and_mouth_follows_the_speech(
    assets: DemoAssets, clip_frames: list[np.ndarray]
) -> None:
    samples, rate = read_audio(assets.operator_clip)
    hop = rate // 30
    loud = np.array([np.sqrt(np.mean(samples[i * hop:(i + 1) * hop] ** 2)) for i in range(len(clip_frames))])
    gaps, centres = [], []
    with FaceMesher(still=False) as mesher:
        for frame in clip_frames:
            pts = mesher(frame)
            assert pts is not None
            gaps.append(np.linalg.norm(pts[13] - pts[14]))
            centres.append(pts[:468].mean(0))
    gaps_a, centres_a = np.array(gaps), np.array(centres)
    assert gaps_a.max() - gaps_a.min() > 10  # pixels of mouth opening
    assert np.corrcoef(gaps_a, loud)[0, 1] > 0.5  # measured 0.79
    travel = centres_a.max(0) - centres_a.min(0)
    assert 3 < travel[0] < 80 and travel[1] < 60  # gentle motion, face stays in frame


def test_operator_speaks_different_words_in_a_different_voice(assets: DemoAssets) -> None:
    assert demo.OPERATOR_TEXT != demo.PERSONA_TEXT
    assert demo.OPERATOR_VOICE != demo.PERSONA_VOICE
    operator, _ = read_audio(assets.operator_clip, 16000)
    persona, _ = read_audio(assets.persona_dir / "voice.wav")
    assert np.sqrt(np.mean(operator**2)) > 0.02
    assert abs(len(operator) - len(persona)) > 16000  # different material, not a copy


def test_second_call_reuses_the_cache(assets: DemoAssets) -> None:
    files = [assets.persona_dir / "photo.png", assets.persona_dir / "voice.wav",
             assets.operator_clip, assets.operator_photo]
    before = {p: p.stat().st_mtime_ns for p in files}
    again = demo_assets(assets.operator_clip.parent)
    assert again == assets
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_only_a_missing_file_is_rebuilt(tmp_path: Path, assets: DemoAssets) -> None:
    root = tmp_path / "copy"
    (root / "persona").mkdir(parents=True)
    for rel in ("persona/photo.png", "operator.mp4", "operator.png"):
        (root / rel).write_bytes((assets.operator_clip.parent / rel).read_bytes())
    kept = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    rebuilt = demo_assets(root)
    assert (rebuilt.persona_dir / "voice.wav").is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert demo_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("EVERCALL_HOME", str(tmp_path / "home"))
    assert demo_cache_dir() == tmp_path / "home" / "demo"
    monkeypatch.delenv("EVERCALL_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert demo_cache_dir() == tmp_path / "user" / ".cache" / "evercall" / "demo"
