"""Latency, identity and stability of the embedded face modes (swap, portrait) on 640x480 frames (CPU).

The operator is scikit-image's astronaut with slight head motion; the persona is the built-in demo
persona, a composite face of no real person (calls/demo/), so no real person's likeness is shown as a
persona in what this writes. Identity is judged by dlib's descriptor (tests/identity.py), which the pipeline never uses.
Jitter is the RMS frame-to-frame motion of the landmarks an independent still mesher finds, on a still
head with sensor noise, for the input and for each mode's output (tests/test_face_stability.py explains
why frame to frame). Prints one JSON object: the swap mode's figures at the top level (as before, for
the suite's table), both modes under "modes". `--sheet PATH` writes a contact sheet to look at: input |
swap | portrait for a moving head, an open mouth with teeth, a blink, a 30-degree turn, a raised cup,
and the face lost (held, fading, portrait). `--png DIR` also writes a few input|output pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (480, 640)  # h, w
WARMUP = 5
IDENTITY_EVERY = 4  # dlib takes ~70 ms a face: judge identity on every 4th output frame
JITTER_FRAMES = 20
JITTER_SKIP = 4  # the first frames settle (the tracker's first frame comes from its detector)
JITTER_NOISE = 6.0  # grey levels of sensor noise on the still head
MODES = ("swap", "portrait")
DEFAULT_SHEET = Path("benchmarks") / "results" / "contact_sheet.jpg"


def persona_photo() -> np.ndarray:
    from calls.demo import demo_assets

    return cv2.imread(str(demo_assets().persona_dir / "photo.png"))


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


def still_frames(n: int = JITTER_FRAMES, seed: int = 0) -> list[np.ndarray]:
    """A still head: the operator frame `n` times, each with fresh sensor noise."""
    base = operator_base()
    rng = np.random.default_rng(seed)
    return [np.clip(base + rng.normal(0.0, JITTER_NOISE, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def make_filter(mode: str, photo: np.ndarray):
    if mode == "swap":
        from filters.face.swap import FaceSwapFilter

        return FaceSwapFilter(photo)
    from filters.face.portrait import PortraitFilter

    return PortraitFilter(photo)


def jitter(frames: list[np.ndarray]) -> float | None:
    """RMS frame-to-frame landmark motion (px) of an independent still mesher, after JITTER_SKIP frames."""
    from filters.face.landmarks import FaceMesher

    with FaceMesher(still=True) as mesher:
        found = [mesher(f) for f in frames[JITTER_SKIP:]]
    if any(p is None for p in found):
        return None
    pts = np.array([p[:468] for p in found])
    return float(np.sqrt((np.diff(pts, axis=0) ** 2).sum(axis=2).mean()))


def measure_mode(mode: str, photo: np.ndarray, clip: list[np.ndarray], still: list[np.ndarray]) -> tuple[dict, list]:
    """Time, identity and jitter of one mode; returns (figures, output frames of `clip` after warm-up)."""
    from benchmarks.identity import distance, face_descriptor

    f = make_filter(mode, photo)
    times, cpu, outputs, found = [], [], [], 0
    try:
        for i, frame in enumerate(clip):
            t0, c0 = time.perf_counter(), time.process_time()
            out = f.process(frame, i / 30.0)
            dt = (time.perf_counter() - t0) * 1000.0
            if i >= WARMUP:
                times.append(dt)
                cpu.append((time.process_time() - c0) * 1000.0)
                outputs.append(out.image)
                found += out.face_found
    finally:
        f.close()
    f = make_filter(mode, photo)
    try:
        still_out = [f.process(frame, i / 30.0).image for i, frame in enumerate(still)]
    finally:
        f.close()

    persona_d = face_descriptor(photo)
    operator_d = face_descriptor(operator_base())
    to_persona, to_operator = [], []
    for image in outputs[::IDENTITY_EVERY]:
        d = face_descriptor(image)
        if d is not None:
            to_persona.append(distance(d, persona_d))
            to_operator.append(distance(d, operator_d))
    t = np.array(times)
    closer = [p < o for p, o in zip(to_persona, to_operator)]
    out_jitter = jitter(still_out)
    figures = {
        "frames": len(times),
        "median_ms": round(float(np.median(t)), 2),
        "p95_ms": round(float(np.percentile(t, 95)), 2),
        "max_ms": round(float(t.max()), 2),
        # CPU time of this process (all its threads) per frame: less swayed than wall time when other
        # work shares the cores, though MediaPipe's helper threads can make it exceed wall time.
        "cpu_median_ms": round(float(np.median(cpu)), 2),
        "faces_found": int(found),
        "identity_frames_judged": len(to_persona),
        "identity_to_persona_median": round(float(np.median(to_persona)), 3) if to_persona else None,
        "identity_to_operator_median": round(float(np.median(to_operator)), 3) if to_operator else None,
        "identity_closer_to_persona": round(float(np.mean(closer)), 3) if closer else None,
        "jitter_output_px": round(out_jitter, 3) if out_jitter is not None else None,
    }
    return figures, outputs


def run(frames: int = 60, png_dir: str | Path | None = None, sheet: str | Path | None = None,
        modes: tuple[str, ...] = MODES) -> dict:
    """Measure each mode over `frames` frames (after warm-up); the swap mode's figures also at the top level."""
    from benchmarks.identity import distance, face_descriptor

    photo = persona_photo()
    clip = operator_frames(frames + WARMUP)
    still = still_frames()
    in_jitter = jitter(still)
    result: dict = {"frame_size": [FRAME_SIZE[1], FRAME_SIZE[0]], "jitter_input_px": round(in_jitter, 3)
                    if in_jitter is not None else None, "modes": {}}
    outputs: dict[str, list] = {}
    for mode in modes:
        result["modes"][mode], outputs[mode] = measure_mode(mode, photo, clip, still)
    if "swap" in result["modes"]:
        result.update({k: v for k, v in result["modes"]["swap"].items()})
    result["input_to_persona"] = round(distance(face_descriptor(operator_base()), face_descriptor(photo)), 3)

    if png_dir is not None:
        png_dir = Path(png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for mode, outs in outputs.items():
            for k in (0, len(outs) // 2, len(outs) - 1):
                cv2.imwrite(str(png_dir / f"bench_face_{mode}_{k:03d}.png"), np.hstack([clip[WARMUP + k], outs[k]]))
    if sheet is not None:
        write_sheet(Path(sheet), photo, modes)
        result["sheet"] = str(sheet)
    return result


def sheet_rows() -> list[tuple[str, list[tuple[float, np.ndarray]]]]:
    """(label, frames) for each row of the contact sheet; frames are (t, image), the last one is shown."""
    from benchmarks.face_scenes import close_eyes, deform, open_mouth, with_cup, yawed

    base = operator_base()
    rest = [(i / 30, base) for i in range(4)]
    moving = operator_frames(12)
    blank = np.zeros_like(base)
    t = 4 / 30
    lost = [(t + 0.6, blank)]  # 0.6 s after the last face: past the hold, in the fade
    return [
        ("head moving", rest + [(t + i / 30, f) for i, f in enumerate(moving)]),
        ("mouth open, teeth", rest + [(t, open_mouth(base)[0]), (t + 1 / 30, open_mouth(base)[0])]),
        ("blink", rest + [(t, deform(base, close_eyes)), (t + 1 / 30, deform(base, close_eyes))]),
        ("turned 30 deg", rest + [(t + i / 30, yawed(base, 30)) for i in range(4)]),
        ("cup raised", rest + [(t + i / 30, with_cup(base)[0]) for i in range(3)]),
        ("face lost: fading", rest + lost),
        ("face lost: portrait", rest + [(t + 2.0, blank)]),
    ]


def write_sheet(path: Path, photo: np.ndarray, modes: tuple[str, ...] = MODES, cell: int = 320) -> None:
    """A grid of input | output per mode, one row per case, each cell `cell` px wide, labelled."""
    h = cell * FRAME_SIZE[0] // FRAME_SIZE[1]
    rows = []
    for label, frames in sheet_rows():
        cells = [_label(cv2.resize(frames[-1][1], (cell, h), interpolation=cv2.INTER_AREA), f"input: {label}")]
        for mode in modes:
            f = make_filter(mode, photo)
            try:
                for t, frame in frames:
                    out = f.process(frame, t)
            finally:
                f.close()
            cells.append(_label(cv2.resize(out.image, (cell, h), interpolation=cv2.INTER_AREA),
                                f"{mode}: {out.source}"))
        rows.append(np.hstack(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: swap,portrait")
    parser.add_argument("--png", default=None, help="folder for a few input|output PNGs")
    parser.add_argument("--sheet", default=str(DEFAULT_SHEET), help="contact sheet PNG ('' for none)")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m)
    result = run(args.frames, args.png, args.sheet or None, modes)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
