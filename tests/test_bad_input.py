"""Bad input gets a one-line error that says what to do; nothing crashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf

from engine.errors import MediaError, PersonaError
from engine.persona import load_persona_dir, read_photo, read_voice


def _voice(path: Path, seconds: float, rate: int = 16000, channels: int = 1, level: float = 0.2) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = level * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(str(path), data.astype(np.float32), rate)
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 300
    return text


def test_missing_photo(tmp_path: Path) -> None:
    with pytest.raises(PersonaError) as err:
        read_photo(tmp_path / "nope.jpg")
    assert "not found" in _one_line(err.value)


def test_unreadable_photo(tmp_path: Path) -> None:
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(PersonaError) as err:
        read_photo(bad)
    assert "JPEG or PNG" in _one_line(err.value)


def test_photo_without_a_face(tmp_path: Path) -> None:
    from engine.persona import Persona
    from filters.factory import face_filter

    persona = Persona("cup", cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), np.zeros(16000, np.float32))
    with pytest.raises(PersonaError) as err:
        face_filter(persona)
    assert "no face" in _one_line(err.value)


def test_silent_voice(tmp_path: Path) -> None:
    with pytest.raises(PersonaError) as err:
        read_voice(_voice(tmp_path / "v.wav", 5, level=0.0))
    assert "silent" in _one_line(err.value)


def test_too_short_voice(tmp_path: Path) -> None:
    with pytest.raises(PersonaError) as err:
        read_voice(_voice(tmp_path / "v.wav", 2.0))
    assert "at least 3 s" in _one_line(err.value)


def test_stereo_voice_at_any_rate_is_accepted(tmp_path: Path) -> None:
    samples = read_voice(_voice(tmp_path / "v.wav", 4.0, rate=44100, channels=2))
    assert samples.ndim == 1 and abs(len(samples) - 4 * 16000) <= 2


def test_persona_folder_without_voice(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(PersonaError) as err:
        load_persona_dir(tmp_path)
    assert "no voice sample" in _one_line(err.value)


def test_missing_and_corrupt_input_video(tmp_path: Path, demo_persona) -> None:
    from calls.render import render

    with pytest.raises(MediaError) as err:
        render(demo_persona, tmp_path / "missing.mp4", tmp_path / "out.mp4", progress=False)
    assert "not found" in _one_line(err.value)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(MediaError) as err:
        render(demo_persona, corrupt, tmp_path / "out.mp4", progress=False)
    assert "corrupt" in _one_line(err.value)
    assert not (tmp_path / "out.mp4").exists(), "a failed render leaves no output behind"


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "calls.cli", "render", "--persona", str(tmp_path / "none"),
                           "--input", "x.mp4", "--output", "y.mp4"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: persona folder not found: {tmp_path / 'none'}"]
