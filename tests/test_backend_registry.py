"""A new backend is one file plus one registry line: a toy face and voice backend, written by this test into a
module of its own, registered, and then heard and seen by a far end in a real call; the CLI offers it too.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from calls.assembly import CallChoices
from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from filters.registry import BACKENDS, FaceBackend, VoiceBackend
from tests.farend import join_for

TOY_MODULE = '''
"""A toy backend: the far end sees a flat green picture and hears a 440 Hz tone."""

import numpy as np

from engine.face_contract import FaceOutput, check_frame


class GreenFace:
    def process(self, image, t_capture):
        check_frame(image)
        out = np.empty_like(image)
        out[:] = (40, 200, 40)  # BGR
        return FaceOutput(out, True, "converted")

    def close(self):
        pass


class ToneVoice:
    delay_samples = 0
    latency_s = 0.0

    def __init__(self, rate):
        self.rate, self.n = rate, 0

    def process(self, samples):
        t = (self.n + np.arange(len(samples))) / self.rate
        self.n += len(samples)
        return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)

    def reset(self):
        self.n = 0


def face_for_persona(persona, models_dir=None):
    return GreenFace()


def voice_for_persona(persona, rate, models_dir=None):
    return ToneVoice(rate)
'''


@pytest.fixture
def toy_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "toy_backend.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    face = BACKENDS.register(FaceBackend("toy", "a flat green picture", modes={"swap": "toy_backend:face_for_persona"}))
    voice = BACKENDS.register(VoiceBackend("toy", "a 440 Hz tone", build="toy_backend:voice_for_persona"))
    yield
    BACKENDS.unregister(face)
    BACKENDS.unregister(voice)
    sys.modules.pop("toy_backend", None)


@pytest.mark.slow
async def test_a_registered_toy_backend_runs_in_a_call(toy_backends, demo, demo_persona) -> None:
    frames: list[np.ndarray] = []
    audio: list[np.ndarray] = []
    call = await start_call(demo_persona, FileSource(demo.operator_clip, loop=True),
                            ServeOptions(port=0, choices=CallChoices(face_backend="toy", voice_backend="toy")))
    try:
        joined = await join_for(call.join_url, 4.0,
                                on_video=lambda f: frames.append(f.to_ndarray(format="bgr24")),
                                on_audio=lambda f: audio.append(f.to_ndarray().reshape(-1, 2)[:, 0] / 32768.0))
    finally:
        await call.stop()
    assert joined["state"] == "connected"
    assert frames, "the far end received no frames"
    mean = frames[-1].reshape(-1, 3).mean(axis=0)
    assert mean[1] > 150 and mean[0] < 90 and mean[2] < 90, f"far end should see the toy's green, saw BGR {mean}"
    heard = np.concatenate(audio[-50:])  # the last half second (48 kHz, 10 ms frames)
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    peak_hz = np.argmax(spectrum) * 48000 / len(heard)
    assert abs(peak_hz - 440.0) < 15, f"far end should hear the toy's 440 Hz tone, loudest at {peak_hz:.0f} Hz"


def test_the_cli_offers_a_registered_backend(toy_backends, capsys: pytest.CaptureFixture[str]) -> None:
    from calls.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["render", "--demo", "--input", "a.mp4", "--output", "b.mp4",
                              "--backend", "toy", "--voice-backend", "toy"])
    assert CallChoices.from_args(args) == CallChoices(face_backend="toy", voice_backend="toy")
    with pytest.raises(SystemExit):
        parser.parse_args(["render", "--help"])
    assert "a flat green picture" in " ".join(capsys.readouterr().out.split())


def test_an_unknown_backend_or_mode_is_refused_in_one_line(demo_persona) -> None:
    from engine.errors import EvercallError
    from filters.factory import face_filter, voice_stream

    with pytest.raises(EvercallError, match="unknown face backend 'nope': choose one of embedded"):
        face_filter(demo_persona, "swap", "nope")
    with pytest.raises(EvercallError, match="unknown voice backend"):
        voice_stream(demo_persona, 48000, "nope")
    with pytest.raises(EvercallError, match="has no 'sideways' mode"):
        face_filter(demo_persona, "sideways")
