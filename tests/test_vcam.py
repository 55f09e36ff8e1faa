"""`evercall vcam`: the persona reaches a virtual camera and a virtual microphone that call apps can pick."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import pyvirtualcam

from calls.cli import main
from calls.devices import AudioDevice
from engine.audio_io import read_audio
from engine.persona import VOICE_RATE
from benchmarks.identity import distance, face_descriptor
from tests.voice_likeness import pitch_verdict

FRAMES: list[np.ndarray] = []
RECORDED: list[np.ndarray] = []


class RecordingCamera:
    """A pyvirtualcam backend that keeps what a call app would have seen."""

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw) -> None:
        self.width, self.height = width, height

    def send(self, frame: np.ndarray) -> None:
        FRAMES.append(frame.reshape(self.height, self.width, 3).copy())

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "test-vcam"

    def native_fourcc(self):
        return None


class ClockedOutput:
    """Stands in for a sounddevice OutputStream on a virtual device: pulls a block every 20 ms."""

    rate = 48000

    def __init__(self, *, samplerate, channels, blocksize, callback, **kw) -> None:
        self._cb, self._block = callback, blocksize
        ClockedOutput.rate = int(samplerate)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._block / 48000):
            out = np.zeros((self._block, 1), np.float32)
            self._cb(out, self._block, None, None)
            RECORDED.append(out[:, 0].copy())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)

    def close(self) -> None:
        pass


@pytest.mark.realtime
def test_vcam_sends_the_persona_to_camera_and_microphone(demo, demo_persona, monkeypatch) -> None:
    import sounddevice

    pyvirtualcam.register_backend("evercall-test", RecordingCamera)
    monkeypatch.setattr(sounddevice, "OutputStream", ClockedOutput)
    monkeypatch.setattr("calls.devices.audio_devices",
                        lambda: [AudioDevice(7, "Monitor of evercall null sink", 0, 2, 48000.0)])
    FRAMES.clear()
    RECORDED.clear()
    code = main(["vcam", "--demo", "--seconds", "4", "--vcam-backend", "evercall-test", "--virtual-mic", "null sink"])
    assert code == 0
    assert len(FRAMES) > 60, "the virtual camera gets a steady stream"
    face = face_descriptor(FRAMES[-1])
    assert face is not None
    assert distance(face, face_descriptor(demo_persona.photo)) < 0.5
    voice = np.concatenate(RECORDED)
    assert float(np.sqrt(np.mean(voice[-len(voice) // 2:] ** 2))) > 0.01, "the virtual microphone is live"
    operator, operator_rate = read_audio(demo.operator_clip)
    verdict = pitch_verdict(voice, ClockedOutput.rate, demo_persona.voice, VOICE_RATE, operator, operator_rate)
    assert verdict.toward_persona > 0.6, f"the virtual microphone should carry the converted voice: {verdict}"


def test_vcam_without_a_virtual_camera_says_how_to_get_one(demo, capsys, monkeypatch) -> None:
    code = main(["vcam", "--demo", "--seconds", "1", "--vcam-backend", "v4l2loopback"])
    assert code == 2
    err = capsys.readouterr().err
    assert "virtual camera" in err and ("modprobe v4l2loopback" in err or "OBS" in err)
