"""`persona create NAME --video CLIP`: the photo, voice and face likeness a persona is made of, from a clip.

With --video the face is learnt from several views of the clip (filters/face/from_video.py); the persona
photo is the clip's best frontal frame unless --photo is given, and the voice sample is the clip's
soundtrack unless --voice is given. The frame is written to a private temporary folder only for the
store to read it in; the soundtrack is handed to the store as the clip itself, which decodes it once
(like any voice file: length limit, silence check). The store keeps both encrypted like any persona's.
The likeness learnt from the views goes into the persona's derived data before the store derives the
rest, so the face is learnt once (from the clip) and the photo's own likeness is never computed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import PersonaError


def persona_inputs(args: argparse.Namespace, folder: Path):
    """(photo path, voice path, ClipLikeness or None) for `persona create`; `folder` is private and temporary."""
    video = getattr(args, "video", None)
    if not video:
        if not args.photo:
            raise PersonaError("give the persona's photo with --photo PHOTO, or a short clip with --video CLIP")
        if not args.voice:
            raise PersonaError("give a voice sample with --voice FILE, or a clip with a soundtrack with --video CLIP")
        return args.photo, args.voice, None
    import cv2

    from filters.face.from_video import learn_from_clip

    clip = learn_from_clip(video)
    photo = args.photo
    if not photo:
        photo = folder / "photo.png"
        cv2.imwrite(str(photo), clip.photo)
    voice = args.voice
    if not voice:
        if not clip.has_audio:
            raise PersonaError(f"the clip {Path(video).name} has no soundtrack: give a voice sample with --voice FILE")
        voice = Path(video)  # the store decodes the soundtrack (once) and checks it like any voice sample
    return photo, voice, clip


def keep_clip_likeness(persona, clip) -> None:
    """Put the likeness learnt from the clip's views into `persona.derived`, so that `derive` (through
    likeness_for) uses it instead of learning the face again from the photo."""
    from filters.face.likeness import DERIVED_KEY

    persona.derived[DERIVED_KEY] = clip.likeness.to_bytes()
