"""Building a call's filters from a persona: the one place that knows which backend serves which mode.

Derived data (the voice profile) is computed once per persona and kept in `persona.derived`, so the
persona store can save it and later calls skip the work.
"""

from __future__ import annotations

from engine.persona import Persona

FACE_MODES = ("swap",)


def face_filter(persona: Persona, mode: str = "swap"):
    """The face filter for `mode`; raises PersonaError when the persona photo cannot serve it."""
    if mode not in FACE_MODES:
        raise ValueError(f"unknown face mode {mode!r}: choose one of {', '.join(FACE_MODES)}")
    from filters.face.swap import FaceSwapFilter

    return FaceSwapFilter(persona.photo)


def voice_profile(persona: Persona):
    """The persona's voice profile, fitted on first use and cached (as bytes) in `persona.derived`."""
    from filters.voice.profile import VoiceProfile

    blob = persona.derived.get("voice_profile")
    if blob is not None:
        return VoiceProfile.from_bytes(blob)
    profile = VoiceProfile.fit(persona.voice, persona.voice_rate)
    persona.derived["voice_profile"] = profile.to_bytes()
    return profile


def voice_stream(persona: Persona, rate: int):
    """A streaming voice converter toward the persona, at the call's sample rate."""
    from filters.voice.stream import VoiceStream

    return VoiceStream(voice_profile(persona), rate)
