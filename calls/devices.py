"""Local devices: cameras, microphones and speakers by name or index, and the virtual camera/microphone.

The virtual camera goes through pyvirtualcam (v4l2loopback on Linux, the OBS camera on Windows and macOS);
the virtual microphone is any audio output device that another app can record from: a PulseAudio null
sink's monitor, VB-CABLE, BlackHole. Both run on their own threads and read the pipeline's outputs.
"""

from __future__ import annotations

import glob
import logging
import platform
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import DeviceError
from engine.pipeline import AUDIO_BLOCK, AUDIO_RATE, CallPipeline

log = logging.getLogger(__name__)

VCAM_FIX = {
    "Linux": "load v4l2loopback: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=evercall",
    "Windows": "install OBS Studio and start its virtual camera once",
    "Darwin": "install OBS Studio and start its virtual camera once",
}
VMIC_FIX = ("create a virtual audio device and name it with --virtual-mic: on Linux a PulseAudio null sink "
            "(pactl load-module module-null-sink sink_name=evercall), on Windows VB-CABLE, on macOS BlackHole")


@dataclass
class AudioDevice:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: float


def sounddevice_module():
    """The sounddevice module; a missing PortAudio library is a DeviceError that says how to install it."""
    try:
        import sounddevice
    except OSError as exc:
        raise DeviceError("PortAudio is missing: install it (apt-get install libportaudio2)") from exc
    return sounddevice


def audio_devices() -> list[AudioDevice]:
    """PortAudio's devices."""
    sd = sounddevice_module()
    return [AudioDevice(i, d["name"], d["max_input_channels"], d["max_output_channels"], d["default_samplerate"])
            for i, d in enumerate(sd.query_devices())]


def cameras() -> list[str]:
    """Camera device paths on Linux (/dev/video*); elsewhere the indices OpenCV can open (0-4)."""
    if platform.system() == "Linux":
        return sorted(glob.glob("/dev/video*"))
    found = []
    for index in range(5):
        cap = cv2.VideoCapture(index)
        if cap.isOpened():
            found.append(str(index))
        cap.release()
    return found


def find_audio_device(spec: str | int | None, output: bool) -> int | None:
    """A device index from an index or a (case-insensitive) part of its name; None means the default."""
    if spec is None:
        return None
    devices = [d for d in audio_devices() if (d.outputs if output else d.inputs) > 0]
    kind = "speaker or virtual microphone" if output else "microphone"
    if isinstance(spec, int) or str(spec).isdigit():
        index = int(spec)
        if any(d.index == index for d in devices):
            return index
        raise DeviceError(f"no {kind} with index {index}: see `evercall devices`")
    matches = [d for d in devices if str(spec).lower() in d.name.lower()]
    if not matches:
        raise DeviceError(f"no {kind} named like {spec!r}: see `evercall devices`"
                          + ("; " + VMIC_FIX if output else ""))
    return matches[0].index


class VirtualCameraSink:
    """Sends the persona's newest frame to a virtual camera at the call's frame rate."""

    def __init__(self, pipeline: CallPipeline, width: int = 640, height: int = 480, fps: int = 30,
                 backend: str | None = None, device: str | None = None) -> None:
        import pyvirtualcam

        try:
            self._cam = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR,
                                            backend=backend, device=device)
        except RuntimeError as exc:
            fix = VCAM_FIX.get(platform.system(), "install a virtual camera driver")
            raise DeviceError(f"no virtual camera available ({exc}): {fix}") from exc
        self.device = self._cam.device
        self._pipeline = pipeline
        self._size = (width, height)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evercall-vcam", daemon=True)

    def start(self) -> "VirtualCameraSink":
        self._thread.start()
        return self

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            _, frame = self._pipeline.video_out.peek()
            if frame is not None and frame is not last:
                self._pipeline.note_video_sent(frame.t_capture)
                last = frame
            image = last.image if last is not None else np.zeros((self._size[1], self._size[0], 3), np.uint8)
            if image.shape[1::-1] != self._size:
                image = cv2.resize(image, self._size)
            self._cam.send(np.ascontiguousarray(image))
            self._cam.sleep_until_next_frame()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._cam.close()


class AudioOutputSink:
    """Plays a bounded ring on an output device (the virtual microphone, or the operator's speaker)."""

    def __init__(self, ring, device: int | None, on_sent=None, name: str = "output") -> None:
        sd = sounddevice_module()

        def callback(outdata, frames, time_info, status) -> None:
            ring.trim_to(0.06)  # the device's clock may run slower than the source's: keep the delay flat
            samples, t_first = ring.read(frames)
            outdata[:, 0] = samples
            if on_sent is not None:
                on_sent(t_first)

        try:
            self._stream = sd.OutputStream(samplerate=AUDIO_RATE, channels=1, blocksize=AUDIO_BLOCK,
                                           dtype="float32", device=device, callback=callback, latency="low")
        except Exception as exc:
            raise DeviceError(f"cannot open the {name} device {device!r} ({exc}): see `evercall devices`") from exc

    def start(self) -> "AudioOutputSink":
        self._stream.start()
        return self

    def stop(self) -> None:
        self._stream.stop()
        self._stream.close()
