"""Every face and voice backend evercall knows, in one table: what the factory builds, what the CLI offers.

A backend is one module with a constructor `for_persona(persona, models_dir)` (face: one per mode it
serves) or `for_persona(persona, rate, models_dir)` (voice) that returns an object fitting the contract
(`engine.face_contract.FaceFilter`, `engine.voice_contract.VoiceFilter`), plus one `register(...)` line
below. The factory (`filters/factory.py`), the CLI's `--backend`/`--voice-backend`/`--mode` choices and
help, and `evercall models list|check` all read this table, so nothing else names a backend.

Constructors are given as "module:function" strings and imported on first use, so listing the backends
(for `--help`) never loads MediaPipe, onnxruntime or insightface.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.errors import EvercallError

# What the far end sees: "swap" keeps the operator's room and body and replaces their face; "portrait"
# shows the persona's own photo, animated by the operator's head pose and expression; "auto" picks one of
# the two per call from what the persona's photo supports (filters/face/advice.py).
FACE_MODES: tuple[str, ...] = ("auto", "swap", "portrait")
MODE_HELP: dict[str, str] = {
    "auto": "swap when the persona's photo supports a convincing swap, else portrait "
            "(`evercall persona show` says which and why)",
    "swap": "replaces the operator's face with the persona's, keeping their head, hair and room",
    "portrait": "animates the persona's own photo with the operator's head pose, blinks and mouth",
}
DEFAULT_FACE_MODE = "auto"
DEFAULT_FACE_BACKEND = "embedded"
DEFAULT_VOICE_BACKEND = "world"

Constructor = Callable[..., Any] | str


def _resolve(constructor: Constructor) -> Callable[..., Any]:
    """A constructor given as a callable, or as "package.module:function" imported now."""
    if callable(constructor):
        return constructor
    module, _, name = constructor.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class FaceBackend:
    """A way of producing the persona's face; `modes` maps each face mode it serves to its constructor."""

    name: str
    summary: str  # one line for `--help` and `evercall models list`
    modes: Mapping[str, Constructor]
    models: tuple[str, ...] = ()  # keys of engine.models.MODELS this backend loads (user-supplied weights)

    def create(self, persona: Any, mode: str, models_dir: Path | None = None) -> Any:
        if mode == "auto" and mode not in self.modes:  # a backend that cannot choose serves its first mode
            mode = next(iter(self.modes))
        if mode not in self.modes:
            raise EvercallError(f"the {self.name} face backend has no {mode!r} mode: choose one of "
                                f"{', '.join(self.modes)}")
        return _resolve(self.modes[mode])(persona, models_dir)


@dataclass(frozen=True)
class VoiceBackend:
    """A way of producing the persona's voice: `build(persona, rate, models_dir)` gives a VoiceFilter."""

    name: str
    summary: str
    build: Constructor
    models: tuple[str, ...] = ()

    def create(self, persona: Any, rate: int, models_dir: Path | None = None) -> Any:
        return _resolve(self.build)(persona, rate, models_dir)


@dataclass
class Registry:
    """The backends by name; the first registered stays first in listings."""

    face: dict[str, FaceBackend] = field(default_factory=dict)
    voice: dict[str, VoiceBackend] = field(default_factory=dict)

    def register(self, backend: FaceBackend | VoiceBackend) -> FaceBackend | VoiceBackend:
        table: dict[str, Any] = self.face if isinstance(backend, FaceBackend) else self.voice
        if backend.name in table:
            raise ValueError(f"a backend named {backend.name!r} is already registered")
        table[backend.name] = backend
        return backend

    def unregister(self, backend: FaceBackend | VoiceBackend) -> None:
        table: dict[str, Any] = self.face if isinstance(backend, FaceBackend) else self.voice
        table.pop(backend.name, None)

    def face_backend(self, name: str) -> FaceBackend:
        if name not in self.face:
            raise EvercallError(f"unknown face backend {name!r}: choose one of {', '.join(self.face)}")
        return self.face[name]

    def voice_backend(self, name: str) -> VoiceBackend:
        if name not in self.voice:
            raise EvercallError(f"unknown voice backend {name!r}: choose one of {', '.join(self.voice)}")
        return self.voice[name]

    def with_models(self) -> dict[str, tuple[str, ...]]:
        """Backend name -> the model keys it loads, for the backends that need user-supplied weights."""
        return {b.name: b.models for b in [*self.face.values(), *self.voice.values()] if b.models}


BACKENDS = Registry()
register = BACKENDS.register

register(FaceBackend(
    "embedded", "needs no downloaded weights: MediaPipe face mesh + warp of the persona photo",
    modes={"auto": "filters.face.advice:auto_embedded", "swap": "filters.face.swap:for_persona",
           "portrait": "filters.face.portrait:for_persona"}))
register(FaceBackend(
    "inswapper", "insightface detection + ArcFace + inswapper_128 from your models folder "
                 "(portrait mode is the embedded one)",
    modes={"auto": "filters.face.advice:auto_inswapper", "swap": "filters.face.neural:for_persona",
           "portrait": "filters.face.portrait:for_persona"},
    models=("det_10g", "w600k_r50", "inswapper_128", "gfpgan_1.4")))
register(VoiceBackend(
    "world", "needs no downloaded weights: streaming WORLD vocoder conversion",
    build="filters.voice.stream:world_for_persona"))
register(VoiceBackend(
    "rvc", "your RVC-style ONNX models (content encoder, pitch, decoder), a longer constant delay",
    build="filters.voice.rvc:for_persona",
    models=("rvc_content_encoder", "rvc_pitch", "rvc_decoder")))
