"""The persona's voice profile, learnt once from the voice sample and kept (as bytes) with the persona.

Both voice backends start from it (WORLD converts toward it; RVC maps pitch with it), so it lives here
rather than in either backend.
"""

from __future__ import annotations

from engine.errors import PersonaError
from engine.persona import Persona
from filters.voice.profile import VoiceProfile


def voice_profile(persona: Persona) -> VoiceProfile:
    """The persona's voice profile, fitted on first use and cached (as bytes) in `persona.derived`."""
    blob = persona.derived.get("voice_profile")
    if blob is not None:
        try:
            return VoiceProfile.from_bytes(blob)
        except PersonaError:
            pass  # saved by an older evercall: learn it again from the sample, which the persona keeps
    profile = VoiceProfile.fit(persona.voice, persona.voice_rate)
    persona.derived["voice_profile"] = profile.to_bytes()
    return profile
