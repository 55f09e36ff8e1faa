"""What every face backend is to the rest of evercall: one protocol, the result type, the input checks.

A face filter takes a BGR frame and its capture time and returns a same-size BGR frame plus what it did.
The pipeline, render and the console only ever talk to this protocol, so a new backend is one class that
fits it and one registry entry (filters/registry.py); nothing else learns its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from engine.errors import PersonaError

NO_FACE_MESSAGE = ("no face found in the persona photo: use a photo where one face is clearly visible, "
                   "frontal, at least 100 px wide")


@dataclass
class FaceOutput:
    image: np.ndarray  # BGR uint8, same size as input
    face_found: bool
    source: str  # "converted" | "held" | "portrait" (also while fading to it) | "passthrough"


@runtime_checkable
class FaceFilter(Protocol):
    """One call's face conversion. Driven by one thread at a time (filters keep tracking state)."""

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        """The converted frame for `image` (BGR uint8, h x w x 3) captured at `t_capture` seconds."""
        ...

    def close(self) -> None:
        """Release models and trackers; called once, on the thread that ran `process`."""
        ...


class PassthroughFace:
    """The operator's frame unchanged: the relay's own cost in benchmarks, and a stand-in in tests."""

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        return FaceOutput(image, False, "passthrough")

    def close(self) -> None:
        pass


def check_frame(image: np.ndarray) -> None:
    """Refuse anything but the BGR uint8 (h, w, 3) frames every face filter takes."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("expected a BGR uint8 image of shape (h, w, 3)")


def check_photo(photo: np.ndarray) -> np.ndarray:
    """The photo as a contiguous BGR uint8 array, or a PersonaError saying what is wrong with it."""
    if not isinstance(photo, np.ndarray) or photo.size == 0:
        raise PersonaError("the persona photo is empty: give a JPEG or PNG photo of the face")
    if photo.dtype != np.uint8:
        raise PersonaError("the persona photo must be 8-bit: save it as a JPEG or PNG and load it again")
    if photo.ndim == 2:
        photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    elif photo.ndim == 3 and photo.shape[2] == 4:
        photo = cv2.cvtColor(photo, cv2.COLOR_BGRA2BGR)
    elif photo.ndim != 3 or photo.shape[2] != 3:
        raise PersonaError("the persona photo must be a colour or greyscale image: give a JPEG or PNG photo")
    return np.ascontiguousarray(photo)
