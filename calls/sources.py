"""Operator inputs: a media file (or the demo clip) played in real time, a webcam, a microphone.

Each source runs its own thread and hands out `VideoFrame`s and `AudioChunk`s stamped with the moment
they left the source, through two callbacks. None of them touch the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from engine.errors import DeviceError, MediaError
from engine.media import AudioChunk, VideoFrame, now
from engine.pipeline import AUDIO_BLOCK, AUDIO_RATE

log = logging.getLogger(__name__)
OnVideo = Callable[[VideoFrame], None]
OnAudio = Callable[[AudioChunk], None]
CALL_SIZE = (640, 480)


def fit_frame(image: np.ndarray, size: tuple[int, int] = CALL_SIZE) -> np.ndarray:
    """Scale and centre-crop an image to exactly `size` (w, h) without distorting it."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    scale = max(w / iw, h / ih)
    resized = cv2.resize(image, (max(w, round(iw * scale)), max(h, round(ih * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = (resized.shape[0] - h) // 2
    x0 = (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y0:y0 + h, x0:x0 + w])


class Source:
    """Base: a thread that calls `on_video`/`on_audio` until `stop()`."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.error: Exception | None = None

    def start(self, on_video: OnVideo, on_audio: OnAudio) -> "Source":
        raise NotImplementedError

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # reported by the server, which keeps running
                self.error = exc
                log.error("operator source stopped: %s", exc)
        return run

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)


def probe_media(path: Path) -> None:
    """Fail early, with a line that says what to do, on a missing or unreadable media file."""
    import av

    if not path.is_file():
        raise MediaError(f"input file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video track: give a video of the operator's face")
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot read {path} ({exc.__class__.__name__}): the file is corrupt or not a video; "
                         "re-export it as MP4 (H.264)") from exc


class FileSource(Source):
    """Plays a media file as if it were a live camera and microphone, in real time, looping."""

    def __init__(self, path: str | Path, loop: bool = True, size: tuple[int, int] = CALL_SIZE) -> None:
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.size = size
        probe_media(self.path)

    def start(self, on_video: OnVideo, on_audio: OnAudio) -> "FileSource":
        self._spawn(lambda: self._play(on_video, on_audio), "evercall-file-source")
        return self

    def _play(self, on_video: OnVideo, on_audio: OnAudio) -> None:
        import av

        seq_v = seq_a = 0
        while not self._stop.is_set():
            start = time.monotonic()
            with av.open(str(self.path)) as container:
                streams = [container.streams.video[0]] + list(container.streams.audio[:1])
                resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
                for packet in container.demux(*streams):
                    if self._stop.is_set():
                        return
                    for frame in packet.decode():
                        if frame.time is not None:
                            delay = start + frame.time - time.monotonic()
                            if delay > 0:
                                self._stop.wait(delay)
                        if isinstance(frame, av.VideoFrame):
                            image = fit_frame(frame.to_ndarray(format="bgr24"), self.size)
                            on_video(VideoFrame(image, now(), seq_v))
                            seq_v += 1
                        else:
                            for out in resampler.resample(frame):
                                samples = out.to_ndarray().reshape(-1).astype(np.float32)
                                on_audio(AudioChunk(samples, AUDIO_RATE, now(), seq_a))
                                seq_a += 1
            if not self.loop:
                return


class WebcamSource(Source):
    """A local camera through OpenCV, by index or device path."""

    def __init__(self, device: int | str = 0, size: tuple[int, int] = CALL_SIZE, fps: int = 30) -> None:
        super().__init__()
        self.device, self.size, self.fps = device, size, fps
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            raise DeviceError(f"no camera at {device!r}: plug one in, pick another with --camera, "
                              "or use --source FILE / --demo")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        self._cap.set(cv2.CAP_PROP_FPS, fps)

    def start(self, on_video: OnVideo, on_audio: OnAudio) -> "WebcamSource":
        self._spawn(lambda: self._read(on_video), "evercall-webcam")
        return self

    def _read(self, on_video: OnVideo) -> None:
        """Read frames; when the camera stops (unplugged), keep trying to reopen it until stopped."""
        seq = 0
        while not self._stop.is_set():
            ok, image = self._cap.read()
            if ok:
                if self.error is not None:
                    log.warning("camera %r is back", self.device)
                    self.error = None
                on_video(VideoFrame(fit_frame(image, self.size), now(), seq))
                seq += 1
                continue
            # The far end meanwhile sees the held frame, then the persona's portrait (never a raw face).
            self.error = DeviceError(f"camera {self.device!r} stopped delivering frames: check its cable; "
                                     "retrying every second")
            self._cap.release()
            if self._stop.wait(1.0):
                break
            self._cap = cv2.VideoCapture(self.device)
        self._cap.release()


class MicSource(Source):
    """A local microphone through sounddevice (PortAudio), 20 ms blocks at 48 kHz mono."""

    def __init__(self, device: int | str | None = None) -> None:
        super().__init__()
        self.device = device
        self._stream = None

    def start(self, on_video: OnVideo, on_audio: OnAudio) -> "MicSource":
        from calls.devices import sounddevice_module

        sd = sounddevice_module()
        seq = [0]
        block = AUDIO_BLOCK  # 10 ms: each block waits for its last sample, so smaller is sooner

        def callback(indata, frames, time_info, status) -> None:
            t = now() - frames / AUDIO_RATE
            on_audio(AudioChunk(indata[:, 0].astype(np.float32).copy(), AUDIO_RATE, t, seq[0]))
            seq[0] += 1

        try:
            self._stream = sd.InputStream(samplerate=AUDIO_RATE, channels=1, blocksize=block, dtype="float32",
                                          device=self.device, callback=callback, latency="low")
            self._stream.start()
        except Exception as exc:
            raise DeviceError(f"cannot open microphone {self.device!r} ({exc}): pick one with --mic "
                              "(see `evercall devices`) or use --source FILE / --demo") from exc
        return self

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
        super().stop()


class CombinedSource(Source):
    """A camera and a microphone started together as one operator source."""

    def __init__(self, *parts: Source) -> None:
        super().__init__()
        self.parts = parts

    def start(self, on_video: OnVideo, on_audio: OnAudio) -> "CombinedSource":
        for part in self.parts:
            part.start(on_video, on_audio)
        return self

    def stop(self) -> None:
        for part in self.parts:
            part.stop()

    @property
    def error(self) -> Exception | None:  # type: ignore[override]
        return next((p.error for p in self.parts if p.error), None)

    @error.setter
    def error(self, value: Exception | None) -> None:
        pass
