"""Built-in sample material: a persona that is nobody and an operator clip, made from package-shipped images.

`evercall serve --demo` and the test-suite need a face photo, a voice sample and an operator video without a
camera, a download or anyone's real likeness as the persona. Everything here is generated on first use and
cached:

- persona photo: a composite of several public-domain / package-shipped faces (matplotlib's Grace Hopper,
  the frontal faces in insightface's `t1.jpg`, insightface's Tom Hanks crop). Shapes are averaged after a
  similarity alignment and every face is warped to that mean shape before the textures are averaged, so
  the result is a plausible face that matches none of its sources. It sits on one source's head and
  shoulders, cut out of its group photo, with the hair dyed another shade, in front of a plain studio
  backdrop: a portrait of nobody, not a crop of a photo of real people.
- persona voice: espeak-ng `en+f3` reading neutral sentences, 16 kHz mono.
- persona consent: like every persona folder, the demo's carries `consent.json`, a consent record whose
  evidence is `ABOUT.txt`, a statement of what the persona is made of and that it depicts no real person.
- operator: scikit-image's astronaut photo (public domain, NASA; not part of the composite), animated
  with gentle head motion and a mouth that opens with the envelope of its own speech (espeak-ng `en+m3`,
  different sentences), encoded as H.264 + AAC in MP4.

Each asset is written in a hidden scratch folder and renamed into place, so an interrupted build never
leaves a half-written file that a later call would take as complete.

The builders are split by what they make: `face.py` (the composite persona photo), `voice.py` (the espeak-ng
voices), `clip.py` (the operator clip); this module caches their results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.audio_io import write_wav
from engine.consent import ConsentRecord, sha256_file
from engine.errors import MediaError
from engine.home import HOME_ENV
from engine.persona import VOICE_RATE
from engine.resolve import CONSENT_FILE

from calls.demo.clip import CLIP_AUDIO_RATE, CLIP_FPS, CLIP_HEIGHT, CLIP_WIDTH, operator_still, write_operator_clip
from calls.demo.face import PHOTO_SIZE, SOURCES, composite_face, source_faces
from calls.demo.voice import OPERATOR_TEXT, OPERATOR_VOICE, PERSONA_TEXT, PERSONA_VOICE, persona_voice, speak

__all__ = ["CLIP_AUDIO_RATE", "CLIP_FPS", "CLIP_HEIGHT", "CLIP_WIDTH", "OPERATOR_TEXT", "OPERATOR_VOICE", "PERSONA_TEXT",
           "PERSONA_VOICE", "PHOTO_SIZE", "DemoAssets", "composite_face", "demo_assets", "demo_cache_dir",
           "operator_still", "persona_voice", "source_faces", "speak"]


# Bumped whenever the persona photo or its statement changes: a cache built by an older evercall holds
# the older photo, which must not be served (the stamp lives beside the persona folder, not in it).
PERSONA_VERSION = 2
_VERSION_STAMP = ".persona-version"
ABOUT_FILE = "ABOUT.txt"
_ABOUT_BY = "nobody: synthetic composite made by evercall"
_ABOUT_RELATIONSHIP = "none (depicts no real person)"


@dataclass(frozen=True)
class DemoAssets:
    """Paths of the cached demo material."""

    # photo.png (composite face, 512x512), voice.wav (16 kHz mono, ~20 s), ABOUT.txt and consent.json
    persona_dir: Path
    operator_clip: Path  # operator.mp4: 640x480, 30 fps, H.264 + AAC, ~8 s
    operator_photo: Path  # operator.png: the still the clip animates, same framing as the clip


def demo_cache_dir(cache_dir: Path | None = None) -> Path:
    """Where the demo lives: `cache_dir`, else `$EVERCALL_HOME/demo`, else `~/.cache/evercall/demo`."""
    if cache_dir is not None:
        return Path(cache_dir)
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home) / "demo"
    return Path.home() / ".cache" / "evercall" / "demo"


def demo_assets(cache_dir: Path | None = None) -> DemoAssets:
    """Return the demo material, building whatever is missing from the cache (a few seconds, once)."""
    root = demo_cache_dir(cache_dir)
    assets = DemoAssets(
        persona_dir=root / "persona",
        operator_clip=root / "operator.mp4",
        operator_photo=root / "operator.png",
    )
    assets.persona_dir.mkdir(parents=True, exist_ok=True)
    photo = assets.persona_dir / "photo.png"
    voice = assets.persona_dir / "voice.wav"
    about = assets.persona_dir / ABOUT_FILE
    consent = assets.persona_dir / CONSENT_FILE
    stamp = root / _VERSION_STAMP

    current = _read_stamp(stamp) == PERSONA_VERSION
    if not current:  # built by an older evercall (or the stamp is gone): photo and statement are stale
        for stale in (photo, about, consent):
            stale.unlink(missing_ok=True)
    if not photo.is_file():
        _write_atomic(photo, lambda tmp: _imwrite(tmp, composite_face()), root)
    if not about.is_file() or not consent.is_file():
        # The record names the statement by its hash, so both are written together, statement first.
        _write_atomic(about, lambda tmp: tmp.write_text(about_text(), encoding="utf-8"), root)
        record = demo_consent(about)
        _write_atomic(consent, lambda tmp: tmp.write_text(record.to_json(), encoding="utf-8"), root)
    if not current:
        _write_atomic(stamp, lambda tmp: tmp.write_text(f"{PERSONA_VERSION}\n", encoding="utf-8"), root)
    if not voice.is_file():
        _write_atomic(voice, lambda tmp: write_wav(tmp, persona_voice(), VOICE_RATE), root)
    if not assets.operator_photo.is_file() or not assets.operator_clip.is_file():
        still = operator_still()
        if not assets.operator_photo.is_file():
            _write_atomic(assets.operator_photo, lambda tmp: _imwrite(tmp, still), root)
        if not assets.operator_clip.is_file():
            _write_atomic(assets.operator_clip, lambda tmp: write_operator_clip(tmp, still), root)
    return assets


def about_text() -> str:
    """The demo persona's statement: what it is made of, that it depicts nobody, its voice, its sources."""
    sources = "\n".join(f"- {package}: {path} ({use})" for package, path, use in SOURCES)
    return f"""evercall demo persona (version {PERSONA_VERSION})

This persona is a synthetic composite made by evercall from sample images that ship inside Python
packages, by averaging face shape and texture: the face meshes of several sample faces are averaged,
every face is warped to that mean shape, and the warped faces are averaged. The head and shoulders
around the face are one sample's outline of hair, neck and shoulders, with the hair recoloured, in
front of a plain studio backdrop that replaces its room.

It depicts no real person.

Its voice is synthetic speech: espeak-ng, voice {PERSONA_VOICE}.

Sources:
{sources}
"""


def demo_consent(about: Path) -> ConsentRecord:
    """The consent record of the demo persona: nobody's likeness, so nobody consented; ABOUT.txt is the
    evidence that says so, bound by its hash like any consent document."""
    return ConsentRecord(
        consented_by=_ABOUT_BY,
        relationship=_ABOUT_RELATIONSHIP,
        evidence_sha256=sha256_file(about),
        evidence_name=about.name,
        scope=frozenset({"call", "render"}),
    )


# ----------------------------------------------------------------------------------------------------------
# cache helpers


def _read_stamp(path: Path) -> int | None:
    """The persona version a cache was built with, or None when unknown (no stamp, unreadable)."""
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, write: Callable[[Path], None], scratch: Path) -> None:
    """Write in a private folder under `scratch` and rename, so `path` exists only once it is complete.

    The file keeps its own name while being written (the writers pick formats by suffix) but lives in a
    hidden folder, so a reader listing the persona folder never sees it half-written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".build-", dir=scratch))
    try:
        tmp = tmp_dir / path.name
        write(tmp)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise MediaError(f"cannot write demo image {path}")


