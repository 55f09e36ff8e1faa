"""A persona: the likeness of one person (photo and voice sample) that a call presents.

A persona folder holds at least one photo (`*.jpg`, `*.jpeg`, `*.png`, `*.webp`) and one voice sample
(`*.wav`, `*.flac`, `*.ogg`, `*.mp3`, `*.m4a`). Loading checks what can be checked without the filters
(readable image, usable audio); the face filter checks that the photo shows a face when it prepares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.audio_io import read_audio
from engine.errors import MediaError, PersonaError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VOICE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
VOICE_RATE = 16000
MIN_VOICE_SECONDS = 3.0
# RMS below this (about -50 dBFS) is treated as silence: there is no voice to learn from.
SILENCE_RMS = 0.003
MAX_PHOTO_PIXELS = 40_000_000


@dataclass
class Persona:
    """A likeness ready for the filters. `consent` is filled by the persona store (its own issue)."""

    name: str
    photo: np.ndarray  # BGR uint8
    voice: np.ndarray  # mono float32 at VOICE_RATE
    voice_rate: int = VOICE_RATE
    source: Path | None = None
    consent: Any = None
    derived: dict[str, Any] = field(default_factory=dict)
    notes: str = ""  # the operator's private notes (from the store): shown to the operator, never sent


def read_photo(path: str | Path) -> np.ndarray:
    """Read an image as BGR uint8, refusing missing, corrupt or absurdly large files with a clear line."""
    path = Path(path)
    if not path.is_file():
        raise PersonaError(f"persona photo not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise PersonaError(f"persona photo {path} is empty: give a JPEG or PNG photo of the face")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise PersonaError(f"cannot read persona photo {path}: give a JPEG or PNG photo of the face")
    if image.shape[0] * image.shape[1] > MAX_PHOTO_PIXELS:
        raise PersonaError(f"persona photo {path} is over {MAX_PHOTO_PIXELS // 1_000_000} megapixels: "
                           "resize it first")
    return image


def check_voice(samples: np.ndarray, rate: int, origin: str) -> np.ndarray:
    """Refuse a voice sample the converter cannot learn from (too short, silent)."""
    seconds = len(samples) / rate
    if seconds < MIN_VOICE_SECONDS:
        raise PersonaError(f"voice sample {origin} is {seconds:.1f} s long: give at least "
                           f"{MIN_VOICE_SECONDS:.0f} s of the person speaking (15-90 s is best)")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if not np.isfinite(rms) or rms < SILENCE_RMS:
        raise PersonaError(f"voice sample {origin} is silent: give a recording in which the person speaks")
    return samples


def read_voice(path: str | Path) -> np.ndarray:
    """Read any format, channel count and rate as mono float32 at VOICE_RATE, checked for use."""
    try:
        samples, rate = read_audio(path, VOICE_RATE)
    except MediaError as exc:
        raise PersonaError(str(exc)) from exc
    return check_voice(samples, rate, str(path))


def _pick(folder: Path, suffixes: tuple[str, ...], what: str) -> Path:
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise PersonaError(f"no {what} in persona folder {folder}: add a file ending in {', '.join(suffixes)}")
    return found[0]


def load_persona_dir(folder: str | Path, name: str | None = None) -> Persona:
    """Load a persona from a plain folder holding one photo and one voice sample."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PersonaError(f"persona folder not found: {folder}")
    photo = read_photo(_pick(folder, PHOTO_SUFFIXES, "photo"))
    voice = read_voice(_pick(folder, VOICE_SUFFIXES, "voice sample"))
    return Persona(name=name or folder.name, photo=photo, voice=voice, source=folder)
