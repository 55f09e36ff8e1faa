"""Test speech made with espeak-ng: distinct voices saying known sentences, at 16 kHz.

No package ships recorded speech we may use, so tests synthesise it. espeak's `en+m3` and `en+f3` are
different enough for a speaker encoder (resemblyzer cosine about 0.55-0.61 between them, 0.92 within one).
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
