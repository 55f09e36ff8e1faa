"""Test speech made with espeak-ng: distinct voices saying known sentences, at 16 kHz.

No package ships recorded speech we may use, so tests synthesise it. espeak's `en+m3` and `en+f3` are
different enough for a speaker encoder (resemblyzer cosine about 0.55-0.61 between them, 0.92 within one);
`en+m7` is another man, nearer `en+m3` (about 0.84): the harder, same-gender case.
The sentence sets are disjoint so a persona is never judged on the words it was learned from.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from engine.audio_io import read_audio

MALE = "en+m3"
FEMALE = "en+f3"
OTHER_MALE = "en+m7"  # a second male voice, for same-gender conversion (resemblyzer about 0.84 to en+m3)
RATE = 16000

# Three disjoint sets: what the persona profile is learned from, what the operator says (converted),
# and what the persona's reference embedding is made from.
PERSONA_TEXT = (
    "When I was young we lived by the sea, and every summer my brother and I would row out to the "
    "little island to look for birds. My mother packed bread and cheese, and we stayed until the light "
    "went gold. I still remember the smell of the rope and the cold water on my hands."
)
OPERATOR_TEXT = (
    "Good morning, how are you feeling today? I thought we could talk about the garden and the roses "
    "you planted last spring. The weather has been kind this week, and the tomatoes are nearly ripe. "
    "Tell me what you would like to do on Sunday afternoon."
)
REFERENCE_TEXT = (
    "Please remember to water the plants on the balcony while I am away. The keys are in the blue bowl "
    "near the door, and the neighbours know you are coming on Thursday evening."
)


def feed_in_chunks(stream, x: np.ndarray, sizes=(1, 7, 160, 320, 480, 1000), seed: int = 0) -> np.ndarray:
    """Feed random chunk sizes, checking each call returns exactly what it was given."""
    rng = np.random.default_rng(seed)
    outs, i = [], 0
    while i < len(x):
        chunk = x[i:i + int(rng.choice(sizes))]
        out = stream.process(chunk)
        assert len(out) == len(chunk)
        outs.append(out)
        i += len(chunk)
    return np.concatenate(outs)


def have_espeak() -> bool:
    """Tests that need speech skip, with a reason, where espeak-ng is not installed."""
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str, folder: Path, name: str, speed: int = 160) -> np.ndarray:
    """Synthesise `text` with espeak-ng voice `voice` into `folder/name.wav`; return mono float32 16 kHz."""
    path = Path(folder) / f"{name}.wav"
    if not path.exists():
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                       check=True, capture_output=True, timeout=60)
    samples, _ = read_audio(path, RATE)
    return samples


def phone_recording(samples: np.ndarray, noise_db: float = -45.0, seed: int = 0) -> np.ndarray:
    """What a voicemail makes of a 16 kHz voice: pink room noise at `noise_db` dBFS, 2 s of it either
    side, then a 300-3400 Hz telephone band through an 8 kHz channel, back at 16 kHz."""
    from scipy import signal

    from engine.audio_io import resample

    rng = np.random.default_rng(seed)
    pad = np.zeros(2 * RATE, np.float32)
    x = np.concatenate([pad, np.asarray(samples, np.float32), pad]).astype(np.float64)
    spec = np.fft.rfft(rng.standard_normal(len(x)))
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))
    noise = np.fft.irfft(spec, len(x))
    x += noise * 10 ** (noise_db / 20) / np.sqrt(np.mean(noise ** 2))
    band = signal.butter(4, [300, 3400], "bandpass", fs=RATE, output="sos")
    narrow = resample(signal.sosfilt(band, x).astype(np.float32), RATE, 8000)
    return resample(narrow, 8000, RATE)


def room_noise(kind: str, n: int, level_db: float, seed: int = 0) -> np.ndarray:
    """`n` samples of steady room noise at `level_db` dBFS RMS: white hiss, pink (fan-like) noise or hum."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(x)
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))
        x = np.fft.irfft(spec, n)
    elif kind == "hum":
        t = np.arange(n) / 16000
        x = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)) + 0.05 * x
    return (x * 10 ** (level_db / 20) / np.sqrt(np.mean(np.square(x, dtype=np.float64)))).astype(np.float32)
