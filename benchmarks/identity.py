"""An identity yardstick that no part of the pipeline uses: dlib's 128-d face descriptor.

Same person under mild changes: distance about 0.07-0.29; different people: about 0.68-0.85.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

SAME_PERSON = 0.3
DIFFERENT_PEOPLE = 0.6


@functools.lru_cache(maxsize=1)
def _models():
    import dlib
    import face_recognition_models as frm

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
    )


def face_descriptor(image_bgr: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """Descriptor of the largest face in the image, or None when dlib finds no face."""
    detector, shaper, encoder = _models()
    rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    rects = detector(rgb, upsample)
    if not rects:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    return np.array(encoder.compute_face_descriptor(rgb, shaper(rgb, rect)), dtype=np.float64)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def closer_to_persona(frames, persona_bgr: np.ndarray, operator_bgr: np.ndarray) -> tuple[int, int]:
    """(frames showing a face, of those the ones closer to the persona than to the operator, by dlib)."""
    persona, operator = face_descriptor(persona_bgr), face_descriptor(operator_bgr)
    faced = closer = 0
    for image in frames:
        desc = face_descriptor(image)
        if desc is None:
            continue
        faced += 1
        closer += distance(desc, persona) < distance(desc, operator)
    return faced, closer
