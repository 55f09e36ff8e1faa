"""The demo's voices: espeak-ng speech for the persona's sample and the operator clip's soundtrack."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from engine.audio_io import read_audio
from engine.errors import MediaError
from engine.persona import VOICE_RATE

PERSONA_TEXT = (
    "Hello, it is good to hear your voice again. The garden is full of roses this summer, and the old "
    "apple tree by the fence gave more fruit than ever. I walked down to the lake on Sunday morning; the "
    "water was calm and the air smelled of pine. Tell me about your week, and about the children. I keep "
    "thinking of the long dinners we used to have, with music playing in the kitchen."
)
OPERATOR_TEXT = (
    "Good afternoon. I just came back from the market, and the bus was late. "
    "Did you hear the forecast? They say it will snow on Thursday."
)
PERSONA_VOICE, OPERATOR_VOICE = "en+f3", "en+m3"




def speak(text: str, voice: str, rate: int) -> np.ndarray:
    """Synthesise `text` with espeak-ng and return mono float32 at `rate`, peak-normalised to 0.7."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MediaError("espeak-ng is not installed: the demo voices need it (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="evercall-tts-") as tmp:
        wav = Path(tmp) / "speech.wav"
        proc = subprocess.run([exe, "-v", voice, "-w", str(wav), text], capture_output=True, timeout=60)
        if proc.returncode != 0 or not wav.is_file():
            detail = proc.stderr.decode(errors="replace").strip()
            raise MediaError(f"espeak-ng failed for voice {voice}: {detail}")
        samples, _ = read_audio(wav, rate)
    peak = float(np.max(np.abs(samples))) or 1.0
    return (samples * (0.7 / peak)).astype(np.float32)


def persona_voice() -> np.ndarray:
    """The persona's voice sample: ~20 s of en+f3 at 16 kHz with a short silence either side."""
    speech = speak(PERSONA_TEXT, PERSONA_VOICE, VOICE_RATE)
    pad = np.zeros(int(0.3 * VOICE_RATE), np.float32)
    return np.concatenate([pad, speech, pad])


def operator_audio(rate: int) -> np.ndarray:
    """The operator's speech at the clip's audio rate, with a short quiet either side."""
    speech = speak(OPERATOR_TEXT, OPERATOR_VOICE, rate)
    pad = np.zeros(int(0.3 * rate), np.float32)
    return np.concatenate([pad, speech, pad])


