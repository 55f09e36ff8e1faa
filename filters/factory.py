"""Building a call's filters from a persona: the one place that knows which backend serves which mode.

Derived data (the voice profile) is computed once per persona and kept in `persona.derived`, so the
persona store can save it and later calls skip the work.
"""

from __future__ import annotations

from engine.persona import Persona

FACE_MODES = ("swap", "portrait")
FACE_BACKENDS = ("embedded", "inswapper")


def face_filter(persona: Persona, mode: str = "swap", backend: str = "embedded", models_dir=None):
    """The face filter for `mode` on `backend`.

    "swap" keeps the operator's room and body and replaces their face; "portrait" shows only the persona's
    own photo, animated by the operator's head pose and expression; it needs no face swapper, so it runs
    the same on either backend (the backend only chooses how "swap" replaces the face).
    "embedded" needs no downloaded weights (MediaPipe mesh + warp); "inswapper" runs insightface's
    detector, ArcFace and inswapper_128 from the user's models folder. Raises PersonaError when the photo
    cannot serve, ModelError when a model file is missing or wrong.
    """
    if mode not in FACE_MODES:
        raise ValueError(f"unknown face mode {mode!r}: choose one of {', '.join(FACE_MODES)}")
    if backend not in FACE_BACKENDS:
        raise ValueError(f"unknown face backend {backend!r}: choose one of {', '.join(FACE_BACKENDS)}")
    if mode == "portrait":
        from filters.face.portrait import PortraitFilter

        return PortraitFilter(persona.photo)
    if backend == "inswapper":
        from filters.face.neural import InswapperFilter

        return InswapperFilter(persona.photo, models_dir)
    from filters.face.swap import FaceSwapFilter

    return FaceSwapFilter(persona.photo)


def voice_profile(persona: Persona):
    """The persona's voice profile, fitted on first use and cached (as bytes) in `persona.derived`."""
    from filters.voice.profile import VoiceProfile

    from engine.errors import PersonaError

    blob = persona.derived.get("voice_profile")
    if blob is not None:
        try:
            return VoiceProfile.from_bytes(blob)
        except PersonaError:
            pass  # saved by an older evercall: learn it again from the sample, which the persona keeps
    profile = VoiceProfile.fit(persona.voice, persona.voice_rate)
    persona.derived["voice_profile"] = profile.to_bytes()
    return profile


def derive(persona: Persona) -> dict[str, bytes]:
    """Everything learnt from the likeness once, for the persona store to keep (encrypted) with it.

    Refuses a photo with no usable face and a voice that cannot be learnt, so a bad persona is caught
    when it is created rather than when a call starts.
    """
    import io

    import numpy as np

    from engine.errors import PersonaError
    from filters.face.landmarks import N_MESH_POINTS, FaceMesher
    from engine.face_contract import NO_FACE_MESSAGE

    with FaceMesher(still=True) as mesher:
        points = mesher(persona.photo)
    if points is None:
        raise PersonaError(NO_FACE_MESSAGE)
    buf = io.BytesIO()
    np.save(buf, points[:N_MESH_POINTS].astype(np.float32))
    voice_profile(persona)  # fills persona.derived["voice_profile"]
    return {"face_landmarks": buf.getvalue(), "voice_profile": persona.derived["voice_profile"]}


VOICE_BACKENDS = ("world", "rvc")


def voice_stream(persona: Persona, rate: int, backend: str = "world", models_dir=None):
    """A streaming voice converter toward the persona at the call's sample rate.

    "world" needs no downloaded weights (WORLD vocoder, 44 ms); "rvc" runs the user's RVC-style ONNX
    models (content encoder, pitch, decoder) from the models folder, with a longer constant delay.
    """
    from filters.voice.stream import VoiceStream

    if backend == "rvc":
        from filters.voice.rvc import RvcConverter

        profile = voice_profile(persona)
        return VoiceStream(profile, rate, converter=RvcConverter(profile, models_dir=models_dir))
    if backend != "world":
        raise ValueError(f"unknown voice backend {backend!r}: choose one of {', '.join(VOICE_BACKENDS)}")
    return VoiceStream(voice_profile(persona), rate)
