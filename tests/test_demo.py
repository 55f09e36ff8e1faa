"""The built-in demo material: a persona that is nobody, its voice, and an animated operator clip.

The assets are built once into a temporary cache for the whole module; the checks then read them back the
way the rest of the product would (OpenCV, PyAV, soundfile, MediaPipe, dlib).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from calls import demo
from engine.audio_io import read_audio
from engine.consent import ConsentRecord
from calls.demo import DemoAssets, demo_assets, demo_cache_dir
from engine.errors import ConsentError
from engine.resolve import CONSENT_FILE, open_persona
from filters.face.landmarks import FaceMesher, face_oval_indices
from benchmarks.identity import DIFFERENT_PEOPLE, SAME_PERSON, distance, face_descriptor


@pytest.fixture(scope="module")
def assets(demo: DemoAssets) -> DemoAssets:
    """The session's demo material (conftest builds it once); tests that change files work on copies."""
    return demo


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
    assert sorted(p.name for p in assets.persona_dir.iterdir()) == [
        "ABOUT.txt", CONSENT_FILE, "photo.png", "voice.wav"]


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
    """Measured: 0.59-0.74 to each source (same person is under 0.3), 0.42 to the sources' centroid,
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


def test_persona_photo_has_a_plain_backdrop_and_dyed_hair(photo: np.ndarray) -> None:
    """No room of the carrier's group photo is left (it showed other people), and the hair is brown,
    not the carrier's blonde. Measured: backdrop blocks std <= 1.5; hair L 86-90, b 152-153 (OpenCV
    Lab); the carrier's hair was L 137-165, b 167-171 and its room blocks had std up to 45."""
    # Beside the head down to the shoulders, and above it: where the room and the people behind were.
    blocks = [photo[y:y + 32, x:x + 32] for y in range(0, 416, 32) for x in (0, 32, 64, 96, 480)]
    blocks += [photo[0:32, x:x + 32] for x in (128, 160, 192, 384, 416, 448)]
    for block in blocks:
        pixels = block.reshape(-1, 3).astype(np.float64)
        assert pixels.std(0).max() < 4.0  # plain
        assert pixels[:, 0].mean() > pixels[:, 2].mean() + 10  # cool grey-blue: more blue than red
    with FaceMesher(still=True) as mesher:
        pts = mesher(photo)
    assert pts is not None
    ring = pts[face_oval_indices()]
    x0, x1 = ring[:, 0].min(), ring[:, 0].max()
    width = x1 - x0
    eye_y, mouth_y = int(pts[[33, 263], 1].mean()), int(pts[[61, 291], 1].mean())
    lab = cv2.cvtColor(photo, cv2.COLOR_BGR2LAB).astype(np.float64)
    for a, b in ((x0 - 0.08 * width, x0 - 0.02 * width), (x1 + 0.05 * width, x1 + 0.3 * width)):
        hair = lab[eye_y:mouth_y, int(a):int(b)].reshape(-1, 3).mean(0)
        assert hair[0] < 115 and hair[2] < 160, hair  # darker and less yellow than blonde


def test_demo_persona_passes_the_consent_check(assets: DemoAssets) -> None:
    for use in ("call", "render"):
        persona = open_persona(assets.persona_dir, use)
        assert isinstance(persona.consent, ConsentRecord)
        assert persona.consent.evidence_name == "ABOUT.txt"
        assert persona.consent.consented_by.startswith("nobody")
        assert persona.photo.shape == (demo.PHOTO_SIZE, demo.PHOTO_SIZE, 3)
    about = (assets.persona_dir / "ABOUT.txt").read_text(encoding="utf-8")
    assert "depicts no real person" in about and demo.PERSONA_VOICE in about
    assert all(name in about for name in ("grace_hopper.jpg", "t1.jpg", "Tom_Hanks_54745.png"))


def test_edited_statement_fails_the_consent_check(tmp_path: Path, assets: DemoAssets) -> None:
    copy = tmp_path / "persona"
    shutil.copytree(assets.persona_dir, copy)
    open_persona(copy, "call")  # the copy as such is fine
    with open(copy / "ABOUT.txt", "a", encoding="utf-8") as handle:
        handle.write("It depicts my neighbour.\n")
    with pytest.raises(ConsentError, match="does not match"):
        open_persona(copy, "call")


def test_a_cache_from_an_older_version_gets_the_new_photo(
    tmp_path: Path, assets: DemoAssets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old cache (no version stamp, or an older one) has the old photo and no consent: both are made
    anew; the voice and the operator clip, which did not change, are kept."""
    new_photo = np.full((demo.PHOTO_SIZE, demo.PHOTO_SIZE, 3), 90, np.uint8)
    monkeypatch.setattr(demo, "composite_face", lambda: new_photo)
    for stamp in (None, "1\n"):
        root = tmp_path / f"old-{stamp is None}"
        shutil.copytree(assets.operator_clip.parent, root)
        (root / "persona" / "ABOUT.txt").unlink()
        (root / "persona" / CONSENT_FILE).unlink()
        if stamp is None:
            (root / ".persona-version").unlink()
        else:
            (root / ".persona-version").write_text(stamp, encoding="utf-8")
        voice = root / "persona" / "voice.wav"
        kept = {p: p.stat().st_mtime_ns for p in (voice, root / "operator.mp4", root / "operator.png")}
        rebuilt = demo_assets(root)
        assert np.array_equal(cv2.imread(str(rebuilt.persona_dir / "photo.png")), new_photo)
        assert (root / ".persona-version").read_text(encoding="utf-8").strip() == str(demo.PERSONA_VERSION)
        assert open_persona(rebuilt.persona_dir, "call").consent is not None
        assert {p: p.stat().st_mtime_ns for p in kept} == kept


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
    files = [assets.persona_dir / name for name in ("photo.png", "voice.wav", "ABOUT.txt", CONSENT_FILE)]
    files += [assets.operator_clip, assets.operator_photo, assets.operator_clip.parent / ".persona-version"]
    before = {p: p.stat().st_mtime_ns for p in files}
    again = demo_assets(assets.operator_clip.parent)
    assert again == assets
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_only_a_missing_file_is_rebuilt(tmp_path: Path, assets: DemoAssets) -> None:
    root = tmp_path / "copy"
    (root / "persona").mkdir(parents=True)
    for rel in ("persona/photo.png", "operator.mp4", "operator.png", ".persona-version"):
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
