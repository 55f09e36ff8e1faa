"""A persona: the likeness of one person (photo and voice sample) that a call presents.

A persona folder holds at least one photo (`*.jpg`, `*.jpeg`, `*.png`, `*.webp`) and one voice sample
(`*.wav`, `*.flac`, `*.ogg`, `*.mp3`, `*.m4a`). Loading checks what can be checked without the filters
(readable image, usable audio); the face filter checks that the photo shows a face when it prepares.

Limits are checked from file headers before anything is decoded, so a huge file cannot exhaust memory:
photos up to 40 megapixels, voice samples up to 10 minutes. A photo showing several faces is cropped to
one of them (`choose_face`): the largest unless the user names another.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.audio_io import TooLong, read_audio
from engine.errors import MediaError, PersonaError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VOICE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
VOICE_RATE = 16000
MIN_VOICE_SECONDS = 3.0
# RMS below this (about -50 dBFS) is treated as silence: there is no voice to learn from.
SILENCE_RMS = 0.003
MAX_PHOTO_PIXELS = 40_000_000
MAX_VOICE_SECONDS = 600.0  # 10 minutes; 15-90 s is what the voice converters need
# What a persona keeps of a longer sample: learning from 10 minutes took 2.3 GB (benchmarks/persona_memory.py)
KEEP_VOICE_SECONDS = 180.0


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
    if path.stat().st_size == 0:
        raise PersonaError(f"persona photo {path} is empty: give a JPEG or PNG photo of the face")
    width, height = _photo_size(path)  # from the header: nothing is decoded yet
    if width * height > MAX_PHOTO_PIXELS:
        raise PersonaError(f"persona photo {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), "
                           f"over the limit of {MAX_PHOTO_PIXELS // 1_000_000} megapixels: resize it first")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.shape[0] * image.shape[1] > MAX_PHOTO_PIXELS:
        raise PersonaError(f"cannot read persona photo {path}: give a JPEG or PNG photo of the face")
    return image


def _photo_size(path: Path) -> tuple[int, int]:
    """Width and height from the image header (Pillow reads only the header here)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns of "decompression bombs": we refuse them ourselves
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError:  # Pillow's own ceiling (far above ours), still only a header read
        return (MAX_PHOTO_PIXELS + 1, 1)
    except Exception as exc:  # Pillow raises many types for files it cannot identify
        raise PersonaError(f"cannot read persona photo {path}: give a JPEG or PNG photo of the face") from exc


@dataclass
class FaceChoice:
    """The photo cropped to one face, how many faces it shows, which was taken (1-based, left to right)."""

    photo: np.ndarray
    count: int
    index: int | None
    note: str = ""


def find_faces(image: np.ndarray) -> list[tuple[float, float, float]]:
    """Faces in a photo as (centre x, centre y, size) in pixels, left to right.

    MediaPipe's full-range detector on the whole photo, plus the short-range one on overlapping tiles
    (it only sees faces that fill a good part of its input); duplicates are merged, best score first.
    """
    import mediapipe as mp

    h, w = image.shape[:2]
    scale = min(1.0, 1280 / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else image
    found: list[tuple[float, float, float, float]] = []

    def detect(detector, part: np.ndarray, x0: int, y0: int) -> None:
        ph, pw = part.shape[:2]
        result = detector.process(cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_BGR2RGB))
        for d in result.detections or []:
            box = d.location_data.relative_bounding_box
            found.append((float(d.score[0]), (box.xmin + box.width / 2) * pw + x0,
                          (box.ymin + box.height / 2) * ph + y0, max(box.width * pw, box.height * ph)))

    sh, sw = small.shape[:2]
    tile = 640
    xs = list(range(0, max(sw - tile, 0) + 1, tile // 2))
    ys = list(range(0, max(sh - tile, 0) + 1, tile // 2))
    xs += [sw - tile] if xs[-1] + tile < sw else []
    ys += [sh - tile] if ys[-1] + tile < sh else []
    detection = mp.solutions.face_detection
    with detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as full:
        detect(full, small, 0, 0)
    with detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as near:
        for y0 in ys:
            for x0 in xs:
                detect(near, small[y0:y0 + tile, x0:x0 + tile], x0, y0)
    kept: list[tuple[float, float, float, float]] = []
    for face in sorted(found, key=lambda f: -f[0]):
        if all(np.hypot(face[1] - k[1], face[2] - k[2]) > 0.5 * k[3] for k in kept):
            kept.append(face)
    return [(cx / scale, cy / scale, size / scale) for _, cx, cy, size in sorted(kept, key=lambda k: k[1])]


def choose_face(photo: np.ndarray, face: int | None = None, origin: str = "the photo") -> FaceChoice:
    """Crop a photo with several faces to one: face `face` (1-based, left to right), else the largest.

    The face filters take the largest face they see, which in a group photo may be the wrong person:
    the crop leaves only the chosen one, and `note` says which was taken and how to pick another.
    """
    faces = find_faces(photo)
    count = len(faces)
    if face is not None and not 1 <= face <= max(count, 1):
        raise PersonaError(f"{origin} shows {count} face{'s' if count != 1 else ''}: --face {face} is not one "
                           f"of them (faces are numbered 1 to {max(count, 1)} from left to right)")
    if count <= 1:
        return FaceChoice(photo, count, 1 if count else None)
    index = face or 1 + max(range(count), key=lambda i: faces[i][2])
    cx, cy, size = faces[index - 1]
    half = 1.2 * size
    h, w = photo.shape[:2]
    x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
    y0, y1 = int(max(0, cy - 1.3 * half)), int(min(h, cy + 1.1 * half))
    why = "as asked" if face else "the largest"
    note = (f"{origin} shows {count} faces; using face {index} ({why}; numbered from the left): pick another "
            "with --face N")
    return FaceChoice(np.ascontiguousarray(photo[y0:y1, x0:x1]), count, index, note)


def check_voice(samples: np.ndarray, rate: int, origin: str) -> np.ndarray:
    """Refuse a voice sample the converter cannot learn from (too short, silent)."""
    seconds = len(samples) / rate
    if not np.isfinite(samples).all():
        raise PersonaError(f"voice sample {origin} holds invalid samples (NaN or infinity), not sound: "
                           "re-export it as 16-bit WAV")
    if seconds < MIN_VOICE_SECONDS:
        raise PersonaError(f"voice sample {origin} is {seconds:.1f} s long: give at least "
                           f"{MIN_VOICE_SECONDS:.0f} s of the person speaking (15-90 s is best)")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if not np.isfinite(rms) or rms < SILENCE_RMS:
        raise PersonaError(f"voice sample {origin} is silent: give a recording in which the person speaks")
    return samples


def keep_voice(samples: np.ndarray, origin: str) -> tuple[np.ndarray, str]:
    """The part of a long voice sample a persona keeps and learns from, and a note saying so ("" if whole)."""
    keep = int(KEEP_VOICE_SECONDS * VOICE_RATE)
    if len(samples) <= keep:
        return samples, ""
    return samples[:keep].copy(), (f"voice sample {origin} is {len(samples) / VOICE_RATE / 60:.1f} minutes long: "
                                   f"its first {KEEP_VOICE_SECONDS / 60:g} minutes are kept and learnt from "
                                   "(15-90 s is what the voice needs)")


def read_voice(path: str | Path) -> np.ndarray:
    """Read any format, channel count and rate as mono float32 at VOICE_RATE, checked for use."""
    try:
        samples, rate = read_audio(path, VOICE_RATE, max_seconds=MAX_VOICE_SECONDS)
    except TooLong as exc:
        raise PersonaError(f"voice sample {path} is {exc.seconds / 60:.1f} minutes long, over the limit of "
                           f"{MAX_VOICE_SECONDS / 60:g} minutes: give a shorter recording (15-90 s is best; "
                           "for a long video, a voice sample of its own with --voice FILE)") from exc
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
