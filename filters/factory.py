"""Building a call's filters from a persona, by the names in the backend registry (filters/registry.py).

Derived data (the persona photo's landmarks, the voice profile) is computed once per persona and kept in
`persona.derived`, so the persona store can save it (encrypted) and later calls skip the work.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from engine.errors import PersonaError
from engine.face_contract import NO_FACE_MESSAGE, FaceFilter
from engine.persona import Persona
from engine.voice_contract import VoiceFilter
from filters.registry import BACKENDS, DEFAULT_FACE_BACKEND, DEFAULT_FACE_MODE, DEFAULT_VOICE_BACKEND


def face_filter(persona: Persona, mode: str = DEFAULT_FACE_MODE, backend: str = DEFAULT_FACE_BACKEND,
                models_dir: Path | None = None) -> FaceFilter:
    """The face filter for `mode` on `backend`. Raises PersonaError when the photo cannot serve,
    ModelError when a model file is missing or wrong, EvercallError for an unknown backend or mode."""
    return BACKENDS.face_backend(backend).create(persona, mode, models_dir)


def voice_stream(persona: Persona, rate: int, backend: str = DEFAULT_VOICE_BACKEND,
                 models_dir: Path | None = None) -> VoiceFilter:
    """A streaming voice converter toward the persona at the call's sample rate, with a constant delay."""
    return BACKENDS.voice_backend(backend).create(persona, rate, models_dir)


def derive(persona: Persona) -> dict[str, bytes]:
    """Everything learnt from the likeness once, for the persona store to keep (encrypted) with it.

    Refuses a photo with no usable face and a voice that cannot be learnt, so a bad persona is caught
    when it is created rather than when a call starts.
    """
    from filters.face.landmarks import N_MESH_POINTS, FaceMesher
    from filters.voice.persona_voice import voice_profile

    with FaceMesher(still=True) as mesher:
        points = mesher(persona.photo)
    if points is None:
        raise PersonaError(NO_FACE_MESSAGE)
    buf = io.BytesIO()
    np.save(buf, points[:N_MESH_POINTS].astype(np.float32))
    voice_profile(persona)  # fills persona.derived["voice_profile"]
    from filters.face.advice import persona_advice

    advice = persona_advice(persona)  # fills persona.derived["face_likeness"] (texture and 3-D shape)
    return {"face_landmarks": buf.getvalue(), "voice_profile": persona.derived["voice_profile"],
            "face_likeness": persona.derived["face_likeness"], "face_advice": advice.text().encode("utf-8")}
