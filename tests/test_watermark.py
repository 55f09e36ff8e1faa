"""Provenance watermark: invisible, survives what a call recording goes through, never cries wolf.

Content is a slow pan and zoom over scikit-image's astronaut at 640x480 and 30 fps; codecs run with
aiortc's own settings (see filters.watermark.sim). Every window here must be found, stricter than the 99 %
target, because a handful of windows cannot show a 1 % miss rate anyway.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.errors import MediaError
from filters.watermark import WatermarkEmbedder, detect_frames, make_payload, verify_video
from filters.watermark.sim import (
    codec_round_trip,
    panned_frames,
    rescale,
    sample_image,
    screen_capture,
    write_video,
)

PERSONA = "persona/rose-1931"
CALL = "call/2025-03-14T18:05:00Z"
PAYLOAD = make_payload(PERSONA, CALL)


@pytest.fixture(scope="module")
def scene() -> list[np.ndarray]:
    return panned_frames(sample_image("astronaut"), 120)


@pytest.fixture(scope="module")
def marked(scene: list[np.ndarray]) -> list[np.ndarray]:
    embedder = WatermarkEmbedder(PAYLOAD)
    return [embedder.mark(frame, i) for i, frame in enumerate(scene)]


@pytest.fixture(scope="module")
def vp8(marked: list[np.ndarray]) -> list[np.ndarray]:
    decoded, bitrate = codec_round_trip(marked, "libvpx", 500_000)
    assert len(decoded) == len(marked)
    assert bitrate < 600_000, f"encoder ignored the 500 kbps target ({bitrate / 1e3:.0f} kbps)"
    return decoded


def _assert_all_found(frames: list[np.ndarray], fps: float = 30.0, **kwargs) -> None:
    windows = detect_frames(frames, fps=fps, **kwargs)
    assert windows, "no complete window"
    missed = [w.start_frame for w in windows if not w.found]
    assert not missed, f"mark missing in windows starting at frames {missed}"
    assert all(w.payload == PAYLOAD for w in windows)


def test_payload_carries_persona_and_call_hashes() -> None:
    assert len(PAYLOAD) == 8
    assert make_payload(PERSONA, "another call")[:4] == PAYLOAD[:4]
    assert make_payload("another persona", CALL)[4:] == PAYLOAD[4:]
    assert make_payload(PERSONA, "another call")[4:] != PAYLOAD[4:]


def test_clean_frames_round_trip_the_payload(marked: list[np.ndarray]) -> None:
    windows = detect_frames(marked[:60])
    assert [w.found for w in windows] == [True, True]
    assert all(w.payload == PAYLOAD and w.tone == (1.0, 1.0) for w in windows)
    assert windows[0].persona_hash == PAYLOAD[:4].hex() and windows[0].call_hash == PAYLOAD[4:].hex()


def test_mark_returns_a_new_frame_of_the_same_kind(scene: list[np.ndarray]) -> None:
    frame = scene[0].copy()
    out = WatermarkEmbedder(PAYLOAD).mark(frame, 0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, scene[0]), "input frame was modified"
    assert not np.array_equal(out, frame)


def test_psnr_is_at_least_40_db_on_varied_pictures(scene: list[np.ndarray]) -> None:
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.float32), (480, 1)).astype(np.uint8)
    noise = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pictures = [
        *scene[::30],
        cv2.resize(sample_image("coffee"), (640, 480)),
        cv2.resize(sample_image("chelsea"), (1280, 720)),
        np.full((480, 640, 3), 128, np.uint8),
        np.full((480, 640, 3), 250, np.uint8),
        cv2.merge([gradient, gradient, gradient]),
        noise,
        cv2.cvtColor(scene[0], cv2.COLOR_BGR2GRAY),
    ]
    embedder = WatermarkEmbedder(PAYLOAD)
    psnr = [cv2.PSNR(p, embedder.mark(p, i)) for i, p in enumerate(pictures)]
    assert min(psnr) >= 40.0, [round(v, 1) for v in psnr]


def test_unmarked_natural_video_is_never_found(scene: list[np.ndarray]) -> None:
    """300 one-second windows (10 fps, low resolution) of moving, noisy natural content plus oddities.

    The CRC bound is 45 * 2**-32 per window (see filters.watermark.detect), so even one find here means
    the detector is broken, not unlucky.
    """
    rng = np.random.default_rng(11)
    frames: list[np.ndarray] = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"):
        small = cv2.resize(sample_image(name), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        for speed, start in ((1.0, 0), (4.0, 500)):
            clip = panned_frames(small, 200, size=(160, 120), speed=speed, start=start)
            frames += [np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8) for f in clip]
    frames += [np.full((120, 160, 3), v, np.uint8) for v in (0, 128, 255) for _ in range(100)]
    frames += [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(300)]
    windows = detect_frames(frames, fps=10.0)
    windows += detect_frames(scene)
    assert len(windows) >= 300
    assert not [w.start_frame for w in windows if w.found]


def test_found_after_vp8_at_500_kbps(vp8: list[np.ndarray]) -> None:
    _assert_all_found(vp8)


def test_found_after_h264_at_call_bitrate(marked: list[np.ndarray]) -> None:
    decoded, bitrate = codec_round_trip(marked[:60], "libx264", 500_000)
    assert bitrate < 700_000
    _assert_all_found(decoded)


def test_found_after_075_rescale(marked: list[np.ndarray], vp8: list[np.ndarray]) -> None:
    small = rescale(marked[:60], 0.75)
    assert small[0].shape == (360, 480, 3)
    _assert_all_found(small)
    _assert_all_found(rescale(vp8, 0.75))


def test_found_in_a_screen_recording_of_the_call(vp8: list[np.ndarray]) -> None:
    _assert_all_found(screen_capture(vp8, factor=0.875, blur=0.8, gamma=0.8))


def test_wrong_key_does_not_decode(marked: list[np.ndarray], scene: list[np.ndarray]) -> None:
    assert not any(w.found for w in detect_frames(marked[:60], key=b"someone else's key"))
    other = WatermarkEmbedder(PAYLOAD, key=b"someone else's key")
    foreign = [other.mark(f, i) for i, f in enumerate(scene[:60])]
    assert not any(w.found for w in detect_frames(foreign))
    assert all(w.found for w in detect_frames(foreign, key=b"someone else's key"))


def test_verify_video_reports_persona_and_call(tmp_path, marked: list[np.ndarray], scene: list[np.ndarray]) -> None:
    path = tmp_path / "call.webm"
    write_video(str(path), marked[:90], "libvpx", 500_000)
    report = verify_video(path)
    assert report.found and report.fraction_found == 1.0 and len(report.windows) == 3
    assert report.payload == PAYLOAD and report.matches(PERSONA, CALL)
    assert not report.matches("persona/someone-else", CALL)
    assert report.persona_hash == PAYLOAD[:4].hex() and report.call_hash == PAYLOAD[4:].hex()

    plain = tmp_path / "plain.webm"
    write_video(str(plain), rescale(scene[:60], 0.5), "libvpx", 300_000)
    report = verify_video(plain)
    assert not report.found and report.fraction_found == 0.0 and report.payload is None


def test_verify_video_explains_a_missing_file(tmp_path) -> None:
    with pytest.raises(MediaError, match="No video"):
        verify_video(tmp_path / "nope.webm")


def test_payload_must_be_eight_bytes() -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        WatermarkEmbedder(b"short")
