"""Peak memory (and time) of `evercall persona create` from the longest voice sample it accepts.

A voice sample may last up to 10 minutes (engine/persona.py MAX_VOICE_SECONDS); the issue's bound is
1.5 GB of peak memory for creating a persona from one. This builds a speech-like 48 kHz stereo WAV of that
length (the most samples a typical recorder writes), a face photo and a consent document, runs the real
CLI in a child process with a throwaway store, and reads the child's peak RSS from getrusage. It also
times a 1-minute sample, so the cost of a long one can be compared on the same machine in the same run.

Run: `python -m benchmarks.persona_memory [out.json]` (default benchmarks/results/persona_memory.json).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from engine.persona import MAX_VOICE_SECONDS

LIMIT_BYTES = 1.5 * 2**30
RATE = 48000


def speech_like(path: Path, seconds: float, rate: int = RATE) -> Path:
    """A voiced, pitch-gliding, syllable-paced tone with breath noise, written in blocks (bounded memory)."""
    rng = np.random.default_rng(3)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16") as out:
        block, phase = 10 * rate, 0.0
        for start in range(0, int(seconds * rate), block):
            t = (start + np.arange(min(block, int(seconds * rate) - start))) / rate
            f0 = 150 + 30 * np.sin(2 * np.pi * 0.3 * t)
            ph = phase + 2 * np.pi * np.cumsum(f0) / rate
            phase = float(ph[-1])
            voiced = sum(np.sin(k * ph) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
            mono = 0.2 * voiced + 0.01 * rng.standard_normal(t.size)
            out.write(np.stack([mono, mono], axis=1).astype(np.float32))
    return path


def create_once(folder: Path, voice: Path, name: str) -> dict:
    """Run `persona create` in a child process; its peak RSS is the growth of RUSAGE_CHILDREN's maximum."""
    from skimage import data

    photo = folder / "face.png"
    if not photo.exists():
        cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        (folder / "consent.pdf").write_bytes(b"%PDF-1.4 consent of the next of kin (benchmark)\n")
    env = {**os.environ, "EVERCALL_HOME": str(folder / f"home-{name}"), "EVERCALL_PASSPHRASE": "benchmark",
           "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "calls.cli", "persona", "create", name, "--photo", str(photo),
                           "--voice", str(voice), "--consent-by", "Bench Mark", "--relationship", "son",
                           "--evidence", str(folder / "consent.pdf")], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"persona create failed: {proc.stderr.strip()}")
    return {"seconds": round(seconds, 1)}


def main(out: Path) -> dict:
    results: dict = {"limit_bytes": LIMIT_BYTES, "max_voice_seconds": MAX_VOICE_SECONDS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Children are measured one at a time: ru_maxrss of RUSAGE_CHILDREN is the largest child so far,
        # so the short run goes first and the long run's figure is its own unless it used less.
        for label, seconds in (("one_minute", 60.0), ("longest_accepted", MAX_VOICE_SECONDS)):
            voice = speech_like(folder / f"{label}.wav", seconds)
            run = create_once(folder, voice, label)
            run["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
            run["voice_seconds"] = seconds
            run["voice_file_bytes"] = voice.stat().st_size
            results[label] = run
            voice.unlink()
    results["under_limit"] = results["longest_accepted"]["peak_rss_bytes"] < LIMIT_BYTES
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "persona_memory.json"
    print(json.dumps(main(path), indent=1))
