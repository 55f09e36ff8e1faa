"""Latency and identity of the embedded face swap on 640x480 frames (CPU).

The operator is scikit-image's astronaut with slight head motion; the persona is matplotlib's Grace
Hopper photo. Identity is judged by dlib's descriptor (tests/identity.py), which the pipeline never uses.
Prints one JSON object; `--png DIR` also writes a few input|output pairs to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (480, 640)  # h, w
WARMUP = 5
IDENTITY_EVERY = 4  # dlib takes ~70 ms a face: judge identity on every 4th output frame


def persona_photo() -> np.ndarray:
    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data/sample_data/grace_hopper.jpg")
    return cv2.imread(path)


def operator_base() -> np.ndarray:
    """Astronaut's head and shoulders filling a 640x480 frame, face about 150 px wide (webcam distance)."""
    import skimage.data

    astro = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    h, w = FRAME_SIZE
    return cv2.resize(astro[0:300, 30:430], (w, h), interpolation=cv2.INTER_CUBIC)


def operator_frames(n: int) -> list[np.ndarray]:
    """`n` frames of slow head motion: a few degrees of roll, some pixels of shift, a little scale."""
    base = operator_base()
    h, w = FRAME_SIZE
    frames = []
    for i in range(n):
        angle = 4.0 * np.sin(i / 6.0)
        scale = 1.0 + 0.03 * np.sin(i / 9.0)
        m = cv2.getRotationMatrix2D((w / 2, h * 0.4), angle, scale)
        m[:, 2] += (10.0 * np.sin(i / 7.0), 6.0 * np.cos(i / 8.0))
        frames.append(cv2.warpAffine(base, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def run(frames: int = 60, png_dir: str | Path | None = None) -> dict:
    """Time FaceSwapFilter.process over `frames` frames (after warm-up) and measure identity."""
    from filters.face.swap import FaceSwapFilter
    from tests.identity import distance, face_descriptor

    photo = persona_photo()
    clip = operator_frames(frames + WARMUP)
    swap = FaceSwapFilter(photo)
    times, outputs, found = [], [], 0
    try:
        for i, frame in enumerate(clip):
            t0 = time.perf_counter()
            out = swap.process(frame, i / 30.0)
            dt = (time.perf_counter() - t0) * 1000.0
            if i >= WARMUP:
                times.append(dt)
                outputs.append(out.image)
                found += out.face_found
    finally:
        swap.close()

    persona_d = face_descriptor(photo)
    operator_d = face_descriptor(operator_base())
    to_persona, to_operator = [], []
    for image in outputs[::IDENTITY_EVERY]:
        d = face_descriptor(image)
        if d is not None:
            to_persona.append(distance(d, persona_d))
            to_operator.append(distance(d, operator_d))

    if png_dir is not None:
        png_dir = Path(png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for k in (0, len(outputs) // 2, len(outputs) - 1):
            cv2.imwrite(str(png_dir / f"bench_face_{k:03d}.png"), np.hstack([clip[WARMUP + k], outputs[k]]))

    t = np.array(times)
    closer = [p < o for p, o in zip(to_persona, to_operator)]
    return {
        "frames": len(times),
        "frame_size": [FRAME_SIZE[1], FRAME_SIZE[0]],
        "median_ms": round(float(np.median(t)), 2),
        "p95_ms": round(float(np.percentile(t, 95)), 2),
        "max_ms": round(float(t.max()), 2),
        "faces_found": int(found),
        "identity_frames_judged": len(to_persona),
        "identity_to_persona_median": round(float(np.median(to_persona)), 3) if to_persona else None,
        "identity_to_operator_median": round(float(np.median(to_operator)), 3) if to_operator else None,
        "identity_closer_to_persona": round(float(np.mean(closer)), 3) if closer else None,
        "input_to_persona": round(distance(operator_d, persona_d), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--png", default=None, help="folder for a few input|output PNGs")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args()
    result = run(args.frames, args.png)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    main()
