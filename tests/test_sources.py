"""Operator inputs: a camera that is unplugged and plugged back in is picked up again."""

from __future__ import annotations

import time

import numpy as np

import calls.sources as sources
from tests.waiting import until as _until


class FlakyCapture:
    """A camera that delivers 5 frames, fails 3 reads (unplugged), then works again."""

    opened = 0
    script: list[bool] = []

    def __init__(self, device) -> None:
        FlakyCapture.opened += 1

    def isOpened(self) -> bool:
        return True

    def set(self, *args) -> bool:
        return True

    def read(self):
        ok = FlakyCapture.script.pop(0) if FlakyCapture.script else True
        time.sleep(0.005)
        return ok, (np.full((480, 640, 3), 100, np.uint8) if ok else None)

    def release(self) -> None:
        pass


def test_webcam_unplugged_and_replugged(monkeypatch) -> None:
    FlakyCapture.opened = 0
    FlakyCapture.script = [True] * 5 + [False]
    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCapture)
    frames = []
    cam = sources.WebcamSource(0).start(frames.append, lambda chunk: None)
    try:
        assert _until(lambda: cam.error is not None), "the unplugged camera is reported"
        assert "retrying" in str(cam.error) and len(frames) == 5
        # It retries once a second: wait for the effect (reopened, frames again), however busy the machine.
        assert _until(lambda: FlakyCapture.opened >= 2 and len(frames) > 10), "the camera was reopened"
        assert cam.error is None, "the error clears once frames flow again"
    finally:
        cam.stop()
