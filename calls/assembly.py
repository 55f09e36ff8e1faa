"""One call put together in one place: serve, render and vcam all build their filters, marks and audit
records here, from the persona and the user's choices.

`CallChoices` is what the user chose (face mode, backends, models folder): fixed for the call's life.
`CallAssembly` turns it into the call's parts: its id, its face and voice filters, the provenance mark
on every frame, a started pipeline, and its audit records (the call's start and end, or a render),
written the same way whichever command made them.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.face_contract import FaceFilter
from engine.persona import Persona
from engine.pipeline import AUDIO_RATE, CallPipeline
from engine.voice_contract import VoiceFilter
from filters.registry import DEFAULT_FACE_BACKEND, DEFAULT_FACE_MODE, DEFAULT_VOICE_BACKEND

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallChoices:
    """The user's choices for one call, render or virtual camera."""

    mode: str = DEFAULT_FACE_MODE
    face_backend: str = DEFAULT_FACE_BACKEND
    voice_backend: str = DEFAULT_VOICE_BACKEND
    models_dir: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "CallChoices":
        """From the face options every calling command shares (see calls/call_inputs.add_face_options)."""
        return cls(mode=args.mode, face_backend=args.backend, voice_backend=args.voice_backend,
                   models_dir=args.models_dir)


def persona_id(persona: Persona) -> str:
    """What the audit log calls a persona: its store id or its folder's name, never its likeness."""
    return persona.source.name if persona.source is not None else persona.name


def new_call_id() -> str:
    """A short random id that names one call (or render) in the audit log and in the watermark."""
    return uuid.uuid4().hex[:16]


class CallAssembly:
    """A persona, the user's choices and a call id, and everything a call is built from them."""

    def __init__(self, persona: Persona, choices: CallChoices | None = None, call_id: str | None = None,
                 audit: Any = "default") -> None:
        """`audit`: an engine.audit.AuditLog, None to record nothing, or "default" for the store's log."""
        self.persona = persona
        self.choices = choices or CallChoices()
        self.call_id = call_id or new_call_id()
        if audit == "default":
            from engine.home import audit_log

            audit = audit_log()
        self.audit = audit

    @property
    def persona_id(self) -> str:
        return persona_id(self.persona)

    def face(self, mode: str | None = None) -> FaceFilter:
        """The persona's face filter for `mode` (default: the chosen one) on the chosen backend."""
        from filters.factory import face_filter

        face = face_filter(self.persona, mode or self.choices.mode, self.choices.face_backend,
                           self.choices.models_dir)
        # The mode in use: what "auto" chose for this persona, for the operator page to show.
        self.face_mode = getattr(face, "mode", None) or mode or self.choices.mode
        return face

    def voice(self, rate: int) -> VoiceFilter:
        """The persona's streaming voice filter at `rate` Hz on the chosen backend."""
        from filters.factory import voice_stream

        return voice_stream(self.persona, rate, self.choices.voice_backend, self.choices.models_dir)

    def video_mark(self) -> Callable[[np.ndarray, int], np.ndarray]:
        """The invisible watermark every output frame carries: which persona, which call."""
        from filters.watermark import WatermarkEmbedder, make_payload

        return WatermarkEmbedder(make_payload(self.persona_id, self.call_id)).mark

    def voice_mark(self, rate: int) -> Callable[[np.ndarray], np.ndarray]:
        """The inaudible mark every block of the persona's voice carries, silence included: the same payload."""
        from filters.watermark.voice import voice_provenance_mark

        return voice_provenance_mark(self.persona_id, self.call_id, rate)

    def pipeline(self, rate: int = AUDIO_RATE) -> CallPipeline:
        """The persona's face and voice filters in a started pipeline (filters are built before any I/O);
        every frame and every audio block that leaves carries the provenance marks."""
        face = self.face()
        try:
            voice = self.voice(rate)
            mark, voice_mark = self.video_mark(), self.voice_mark(rate)
        except BaseException:
            face.close()
            raise
        return CallPipeline(face, voice, audio_rate=rate, mark=mark, voice_mark=voice_mark).start()

    def record(self, event: str, strict: bool = False, **fields: Any) -> None:
        """Append this call's `event` to the audit log. A logging failure never ends a live call; with
        `strict` (a render, whose output must not exist unrecorded) it is raised."""
        if self.audit is None:
            return
        try:
            self.audit.append(event, persona=self.persona_id, call=self.call_id, **fields)
        except Exception:
            if strict:
                raise
            log.exception("could not write the audit record %s", event)
