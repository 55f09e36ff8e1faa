"""A persona from a clip against one from the clip's best frame, by the dlib yardstick, on several real people.

Issue 12: a persona made from a clip in which the person turns covers both sides of the face and is at least
as close as one made from the clip's best frame. For each person (the real faces installed packages ship) a
clip is made as tests/test_likeness_video.py makes it: a second of the photo as photographed, then the head
turning to about +-55 degrees and back (benchmarks/operator_clips.py draws the turned frames in 3-D). Three
likenesses are learnt from it: the best frame alone, the old per-texel mean of the views (atlas.merge), and
the per-texel winner on the best frame's base (filters/face/view_merge.py, what `persona create --video`
uses). Each drives the swap on an operator (another person) turning +-30 degrees; the median dlib distance
of the outputs to the person's own photo is reported, with the texture coverage of each side. Portrait mode
draws from the persona photo alone, which is the clip's best frame either way, so its outputs are the same.

    python -m benchmarks.bench_clip_persona [--phone] [--people grace_hopper astronaut ...] [--json out.json]

--phone films the turning frames as a phone would (motion smear, exposure and white-balance drift), the
case the per-texel winner, its sharpness weight and its colour match are for.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.identity import distance, face_descriptor
from benchmarks.operator_clips import ClipMaker, write_clip

PEOPLE = ("grace_hopper", "astronaut", "tom_hanks", "t1_2", "t1_5")
OPERATOR = "t1_1"
OPERATOR_YAWS = (0, 0, 0, 0, -10, -15, -25, -30, 0, 10, 15, 25, 30, 0)
WARMUP = 2


def clip_turns() -> list[float]:
    """A second as photographed, then a turn to about +55 degrees, back, to -55 and back (as drawn)."""
    return [0.0] * 30 + [55.0 * np.sin(2 * np.pi * k / 45) for k in range(45)]


def make_clip(photo: np.ndarray, path: Path, phone: bool = False) -> None:
    """The clip as an MP4. `phone`: as a phone camera would film the turn, each turning frame smeared
    sideways by the head's motion during a 1/60 s exposure, and the exposure and white balance drifting
    (up to about +-12 %) as the face turns towards and away from the light."""
    maker = ClipMaker(photo)
    turns = clip_turns()
    frames = []
    for k, yaw in enumerate(turns):
        image = maker.frame(yaw, 0.0, 1.0).image
        if phone and k > 0:
            image = _as_filmed(image, yaw, turns[k] - turns[k - 1])
        frames.append(image)
    write_clip(path, frames, 30)


def _as_filmed(image: np.ndarray, yaw: float, step: float) -> np.ndarray:
    import cv2

    # The face's front moves about (half its width) x (turn in radians) a frame; half a frame's exposure.
    smear = int(round(0.5 * 75.0 * abs(np.radians(step))))
    if smear >= 2:
        kernel = np.full((1, smear), 1.0 / smear, np.float32)
        image = cv2.filter2D(image, -1, kernel)
    gain = 1.0 + 0.12 * np.sin(np.radians(yaw) * 1.6)
    tint = np.array([1.0 - 0.04 * np.sin(np.radians(yaw)), 1.0, 1.0 + 0.04 * np.sin(np.radians(yaw))])
    return np.clip(image.astype(np.float32) * gain * tint, 0, 255).astype(np.uint8)


def swap_distance(photo: np.ndarray, likeness, frames: list[np.ndarray], persona: np.ndarray) -> float:
    """Median dlib distance to the persona of the swap's outputs (after a short warm-up)."""
    from filters.face.swap import FaceSwapFilter

    found = []
    with FaceSwapFilter(photo, likeness=likeness) as swap:
        for i, frame in enumerate(frames):
            d = face_descriptor(swap.process(frame, i / 30).image, upsample=0)
            if i >= WARMUP and d is not None:
                found.append(distance(d, persona))
    return float(np.median(found)) if found else float("nan")


def portrait_distance(photo: np.ndarray, frames: list[np.ndarray], persona: np.ndarray) -> float:
    """Median dlib distance to the persona of portrait mode's outputs: it draws the persona photo alone,
    the clip's best frame for either persona, so this one figure holds for both."""
    from filters.face.portrait import PortraitFilter

    found = []
    with PortraitFilter(photo) as portrait:
        for i, frame in enumerate(frames):
            d = face_descriptor(portrait.process(frame, i / 30).image, upsample=0)
            if i >= WARMUP and d is not None:
                found.append(distance(d, persona))
    return float(np.median(found)) if found else float("nan")


def measure(people: tuple[str, ...], phone: bool = False) -> dict:
    from filters.face.canonical import package_faces
    from filters.face.from_video import best_view, clip_views
    from filters.face.likeness import from_photo, from_views
    from filters.face.view_merge import merge_views

    faces = package_faces()
    ops = {}
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in people:
            op_name = OPERATOR if name != OPERATOR else "astronaut"
            if op_name not in ops:
                maker = ClipMaker(faces[op_name])
                ops[op_name] = [maker.frame(yaw, 0, 1.0).image for yaw in OPERATOR_YAWS]
            path = Path(folder) / f"{name}.mp4"
            make_clip(faces[name], path, phone)
            views, _, _, _ = clip_views(path)
            base = best_view(views)
            photo = views[base].image
            persona = face_descriptor(faces[name])
            kinds = {"best_frame": from_photo(photo), "mean": from_views(views), "winner": merge_views(views, base)}
            row = {"operator": op_name, "views": len(views),
                   "yaws": [round(float(v.pose.angles()[0]), 1) for v in views]}
            for kind, likeness in kinds.items():
                row[kind] = {"distance": round(swap_distance(photo, likeness, ops[op_name], persona), 4),
                             "coverage": [round(c, 3) for c in likeness.coverage()]}
            row["portrait_either"] = round(portrait_distance(photo, ops[op_name], persona), 4)
            results[name] = row
            print(name, {k: row[k] for k in ("views", *kinds, "portrait_either")}, flush=True)
    gaps = [r["winner"]["distance"] - r["best_frame"]["distance"] for r in results.values()]
    return {"phone": phone, "people": results, "median_gap_winner_minus_best": float(np.median(gaps)),
            "max_gap_winner_minus_best": float(np.max(gaps))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", nargs="+", default=list(PEOPLE))
    parser.add_argument("--phone", action="store_true",
                        help="film the turns as a phone would: motion smear, exposure and white balance drift")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out = measure(tuple(args.people), args.phone)
    print(json.dumps({k: v for k, v in out.items() if k != "people"}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
