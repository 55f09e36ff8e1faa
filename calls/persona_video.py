"""`persona create NAME --video CLIP`: the photo, voice and face likeness a persona is made of, from a clip.

With --video the face is learnt from several views of the clip (filters/face/from_video.py); the persona
photo is the clip's best frontal frame unless --photo is given, and the voice sample is the clip's
soundtrack unless --voice is given. The frame and the soundtrack are written to a private temporary
folder only for the store to read them in; the store keeps them encrypted like any other persona's.
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

    from engine.audio_io import read_audio, write_wav
    from engine.persona import VOICE_RATE, check_voice
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
        samples, rate = read_audio(video, VOICE_RATE)
        check_voice(samples, rate, f"(the soundtrack of {Path(video).name})")
        voice = folder / "voice.wav"
        write_wav(voice, samples, rate)
    return photo, voice, clip


def clip_derived(clip) -> dict[str, bytes]:
    """What the clip's views add to the persona's derived data: the likeness and the advice from them."""
    from filters.face.advice import advise

    return {"face_likeness": clip.likeness.to_bytes(), "face_advice": advise(clip.likeness).text().encode("utf-8")}
