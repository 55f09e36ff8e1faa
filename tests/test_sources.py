"""Operator inputs: a camera that is unplugged and plugged back in is picked up again."""

from __future__ import annotations

import time

import numpy as np

import calls.sources as sources


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
    time.sleep(0.3)
    assert cam.error is not None and "retrying" in str(cam.error)
    time.sleep(1.3)
    cam.stop()
    assert FlakyCapture.opened >= 2, "the camera was reopened"
    assert cam.error is None, "the error clears once frames flow again"
    assert len(frames) > 10
