"""Likeness on people evercall has never seen: every ordered pair of the real faces installed packages ship.

Personas and operators are the nine real people in scikit-image's astronaut, matplotlib's Grace Hopper,
insightface's Tom Hanks crop and the six people of insightface's t1.jpg (several turned): 72 ordered
pairs (persona != operator), never the demo persona. Each operator's clip is made from their photo
(benchmarks/operator_clips.py): 640x480, face about 150 px, the head turning to +-40 degrees, nodding,
coming closer and going further. For each pair and each mode (swap, portrait, and auto = the mode
filters/face/advice.py picks for that persona) the yardstick, dlib's face descriptor
(benchmarks/identity.py, which no filter uses), judges every few frames: is the output closer to the
persona than to the operator, and how far is it from the persona. "Opposite three-quarter" frames are
those where the persona photo and the operator's head are turned 15+ degrees opposite ways.

    python -m benchmarks.bench_likeness            # all 72 pairs, ~15-25 min on 2 shared cores
    python -m benchmarks.bench_likeness --quick    # 20 pairs (5 people), fewer frames: CI scale

Tune on --quick only (QUICK_PEOPLE); the full run also reports, per mode, "held_out": the 12 pairs among
the four people no setting was ever tuned on (HELD_OUT_PEOPLE).

Writes benchmarks/results/likeness.json (or --json) and a contact sheet of the five worst pairs for swap
(benchmarks/results/likeness_worst.png): persona photo | operator frame | swap | portrait, frontal and turned.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmarks.identity import distance, face_descriptor
from benchmarks.operator_clips import ClipMaker

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("swap", "portrait")
WARMUP = 3  # the first frames settle (tracker, resting face)
OPPOSITE_DEG = 15.0
QUICK_PEOPLE = ("astronaut", "grace_hopper", "tom_hanks", "t1_2", "t1_5")
# Tuning is done on QUICK_PEOPLE only (--quick); these four are never tuned on, and the full run reports
# their 12 pairs apart ("held_out"): the figure on people the settings were not chosen for.
HELD_OUT_PEOPLE = ("t1_1", "t1_3", "t1_4", "t1_6")
# Issue 12's bars: a pair passes when the output is closer to the persona in 90 % of its judged frames;
# swap needs 90 % of pairs passing and a median distance of 0.45 at most; portrait and auto 95 % of pairs.
FRAME_SHARE = 0.9
SWAP_PAIR_SHARE, SWAP_MEDIAN = 0.9, 0.45
OTHER_PAIR_SHARE = 0.95


@dataclass
class Judged:
    frame: int
    yaw: float  # the operator's head turn from frontal (degrees)
    to_persona: float
    to_operator: float

    @property
    def closer(self) -> bool:
        return self.to_persona < self.to_operator


@dataclass
class Operator:
    name: str
    frames: list[np.ndarray]
    yaws: list[float]
    descriptor: np.ndarray
    judged_input: dict[int, np.ndarray] = field(default_factory=dict)


def make_filter(mode: str, photo: np.ndarray):
    from filters.face.portrait import PortraitFilter
    from filters.face.swap import FaceSwapFilter

    return FaceSwapFilter(photo) if mode == "swap" else PortraitFilter(photo)


def run_pair(mode: str, photo: np.ndarray, op: Operator) -> tuple[list[np.ndarray], list[float]]:
    """The outputs of one mode on one pair, and the milliseconds each frame took."""
    f = make_filter(mode, photo)
    outs, ms = [], []
    try:
        for i, frame in enumerate(op.frames):
            t0 = time.perf_counter()
            outs.append(f.process(frame, i / 30.0).image)
            ms.append((time.perf_counter() - t0) * 1000.0)
    finally:
        f.close()
    return outs, ms


def judge(outs: list[np.ndarray], op: Operator, persona_d: np.ndarray, every: int) -> list[Judged]:
    judged = []
    for i in range(WARMUP, len(outs), every):
        d = face_descriptor(outs[i], upsample=0)
        if d is not None:
            judged.append(Judged(i, op.yaws[i], distance(d, persona_d), distance(d, op.descriptor)))
    return judged


def summary(judged: list[Judged], persona_yaw: float) -> dict:
    closer = [j.closer for j in judged]
    opposite = [j for j in judged if abs(persona_yaw) >= OPPOSITE_DEG and abs(j.yaw) >= OPPOSITE_DEG
                and np.sign(j.yaw) != np.sign(persona_yaw)]
    return {
        "judged": len(judged),
        "closer_share": round(float(np.mean(closer)), 3) if closer else None,
        "median_to_persona": round(float(np.median([j.to_persona for j in judged])), 3) if judged else None,
        "median_to_operator": round(float(np.median([j.to_operator for j in judged])), 3) if judged else None,
        "opposite_judged": len(opposite),
        "opposite_closer_share": round(float(np.mean([j.closer for j in opposite])), 3) if opposite else None,
    }


def overall(pairs: dict, mode: str, bar: float) -> dict:
    """Share of pairs whose closer share reaches `bar` and the median distance over all judged frames."""
    rows = [p[mode] for p in pairs.values() if p[mode]["judged"]]
    dist = [d for p in pairs.values() for d in p[mode]["_to_persona"]]
    opp = [p[mode] for p in pairs.values() if p[mode]["opposite_judged"]]
    return {
        "pairs": len(rows),
        "pairs_meeting_bar": sum(r["closer_share"] >= bar for r in rows),
        "pair_share_meeting_bar": round(sum(r["closer_share"] >= bar for r in rows) / max(len(rows), 1), 3),
        "bar": bar,
        "closer_share_all_frames": round(float(np.mean([c for p in pairs.values() for c in p[mode]["_closer"]])), 3)
        if dist else None,
        "median_to_persona": round(float(np.median(dist)), 3) if dist else None,
        "opposite_pairs": len(opp),
        "opposite_pairs_meeting_bar": sum(r["opposite_closer_share"] >= bar for r in opp),
        "median_ms": round(float(np.median([m for p in pairs.values() for m in p[mode]["_ms"]])), 2)
        if pairs else None,
    }


def measured_yaws(frames: list[np.ndarray]) -> list[float | None]:
    """The head turn a still face mesher measures in each frame (degrees; None where it finds no face)."""
    from filters.face.landmarks import FaceMesher
    from filters.face.likeness import find_view

    with FaceMesher(still=True, depth=True) as mesher:
        views = [find_view(f, mesher) for f in frames]
    return [None if v is None else round(v.pose.angles()[0], 1) for v in views]


def run(people: tuple[str, ...] | None = None, frames: int = 48, every: int = 3, turn: float = 40.0,
        sheet: Path | None = RESULTS / "likeness_worst.png", log=print) -> dict:
    from filters.face.advice import advise
    from filters.face.canonical import package_faces
    from filters.face.likeness import from_photo

    faces = package_faces()
    names = [n for n in faces if people is None or n in people]
    personas = {}
    for name in names:
        likeness = from_photo(faces[name])
        advice = advise(likeness)
        personas[name] = {"photo": faces[name], "descriptor": face_descriptor(faces[name]),
                          "yaw": likeness.yaws[0], "advice": advice}
        log(f"persona {name}: yaw {likeness.yaws[0]:+.0f}, face {likeness.face_px:.0f} px, sharpness "
            f"{likeness.sharpness:.0f}, coverage {likeness.coverage()}; {advice.text().splitlines()[0]}")
    operators = {}
    for name in names:
        maker = ClipMaker(faces[name])
        clip = maker.clip(frames, turn)
        base = face_descriptor(maker.base, upsample=0)
        images = [c.image for c in clip]
        # Judged by the turn a face tracker sees, not the turn drawn (the tracker sees less).
        seen = measured_yaws(images)
        yaws = [s if s is not None else c.photo_yaw + c.yaw for s, c in zip(seen, clip)]
        operators[name] = Operator(name, images, yaws, base)
        log(f"operator {name}: drawn turn +-{turn:.0f}, measured {min(yaws):+.0f} to {max(yaws):+.0f} degrees")

    pairs: dict[str, dict] = {}
    outputs: dict[tuple[str, str, str], list[np.ndarray]] = {}
    t_start = time.time()
    for p in names:
        for o in names:
            if p == o:
                continue
            op = operators[o]
            row: dict = {"persona": p, "operator": o, "persona_yaw": round(personas[p]["yaw"], 1),
                         "auto_mode": personas[p]["advice"].auto}
            for mode in MODES:
                outs, ms = run_pair(mode, personas[p]["photo"], op)
                judged = judge(outs, op, personas[p]["descriptor"], every)
                row[mode] = summary(judged, personas[p]["yaw"])
                row[mode]["_to_persona"] = [j.to_persona for j in judged]
                row[mode]["_closer"] = [j.closer for j in judged]
                row[mode]["_ms"] = ms[WARMUP:]
                outputs[(p, o, mode)] = {i: outs[i] for i in sheet_frames(op)}  # all of them: gigabytes
            row["auto"] = row[row["auto_mode"]]
            pairs[f"{p}->{o}"] = row
            log(f"{p:>12} -> {o:<12} swap {row['swap']['closer_share']} ({row['swap']['median_to_persona']}) "
                f"portrait {row['portrait']['closer_share']} ({row['portrait']['median_to_persona']}) "
                f"[{time.time() - t_start:.0f} s]")
    result = {
        "people": names,
        "frames_per_clip": frames,
        "turn_drawn_deg": turn,
        "turn_measured_deg": {n: [min(operators[n].yaws), max(operators[n].yaws)] for n in names},
        "judged_every": every,
        "frame_size": [640, 480],
        "yardstick": "dlib face descriptor (face-recognition-models), same person < 0.6",
        "overall": {mode: overall(pairs, mode, FRAME_SHARE) for mode in ("swap", "portrait", "auto")},
        "personas": {n: {"yaw": round(personas[n]["yaw"], 1), "advice": personas[n]["advice"].text()}
                     for n in names},
        # Per pair and mode; "_to_persona" keeps every judged frame's distance, so the figures can be re-scored.
        "pairs": {k: {kk: ({x: y for x, y in vv.items() if x not in ("_closer", "_ms")}
                           if isinstance(vv, dict) else vv) for kk, vv in v.items()} for k, v in pairs.items()},
    }
    held = {k: v for k, v in pairs.items() if v["persona"] in HELD_OUT_PEOPLE and v["operator"] in HELD_OUT_PEOPLE}
    if held:
        for mode in ("swap", "portrait", "auto"):
            result["overall"][mode]["held_out"] = overall(held, mode, FRAME_SHARE)
    sw = result["overall"]["swap"]
    result["done"] = {
        "swap_pairs_90pct": sw["pair_share_meeting_bar"] >= SWAP_PAIR_SHARE,
        "swap_median_le_0.45": sw["median_to_persona"] is not None and sw["median_to_persona"] <= SWAP_MEDIAN,
        "portrait_pairs_95pct": result["overall"]["portrait"]["pair_share_meeting_bar"] >= OTHER_PAIR_SHARE,
        "auto_pairs_95pct": result["overall"]["auto"]["pair_share_meeting_bar"] >= OTHER_PAIR_SHARE,
        "swap_opposite_pairs_90pct": sw["opposite_pairs"] > 0
        and sw["opposite_pairs_meeting_bar"] / sw["opposite_pairs"] >= SWAP_PAIR_SHARE,
    }
    if sheet is not None:
        write_sheet(Path(sheet), pairs, personas, operators, outputs)
        result["sheet"] = str(sheet)
    return result


def worst(pairs: dict, n: int = 5) -> list[str]:
    def key(k: str):
        s = pairs[k]["swap"]
        return (s["closer_share"] if s["closer_share"] is not None else -1, -(s["median_to_persona"] or 9))
    return sorted(pairs, key=key)[:n]


def sheet_frames(op: Operator) -> tuple[int, int]:
    """The operator's most frontal and most turned frames after warm-up (the contact sheet shows these)."""
    yaws = np.abs(np.array(op.yaws))
    return WARMUP + int(np.argmin(yaws[WARMUP:])), WARMUP + int(np.argmax(yaws[WARMUP:]))


def write_sheet(path: Path, pairs: dict, personas: dict, operators: dict, outputs: dict, cell: int = 240) -> None:
    """Five worst pairs for swap: persona | operator frontal | swap | portrait | operator turned | swap | portrait."""
    h = cell * 3 // 4
    rows = []
    for k in worst(pairs):
        p, o = pairs[k]["persona"], pairs[k]["operator"]
        op = operators[o]
        frontal, turned = sheet_frames(op)
        photo = personas[p]["photo"]
        ph = cv2.resize(photo, (int(photo.shape[1] * h / photo.shape[0]), h))[:, :cell]
        ph = cv2.copyMakeBorder(ph, 0, 0, 0, cell - ph.shape[1], cv2.BORDER_CONSTANT)
        cells = [_label(ph, f"persona {p}")]
        for i, tag in ((frontal, "frontal"), (turned, f"turned {op.yaws[turned]:+.0f}")):
            cells.append(_label(cv2.resize(op.frames[i], (cell, h)), f"operator {o} {tag}"))
            for mode in MODES:
                cells.append(_label(cv2.resize(outputs[(p, o, mode)][i], (cell, h)), mode))
        s = pairs[k]["swap"]
        cells[0] = _label(cells[0], f"persona {p}: swap {s['closer_share']} d {s['median_to_persona']}", row=1)
        rows.append(np.hstack(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))


def _label(image: np.ndarray, text: str, row: int = 0) -> np.ndarray:
    out = image.copy()
    y = 14 + 16 * row
    cv2.rectangle(out, (0, y - 13), (out.shape[1], y + 3), (0, 0, 0), -1)
    cv2.putText(out, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 people (20 pairs), 24 frames, judge every 4th")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--every", type=int, default=None, help="judge every Nth frame")
    parser.add_argument("--people", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--turn", type=float, default=40.0,
                        help="head turn drawn in the operator clips, degrees (the tracker sees less: reported)")
    parser.add_argument("--json", default=None, help="result file (default benchmarks/results/likeness[_quick].json)")
    parser.add_argument("--sheet", default=None, help="contact sheet PNG ('' for none)")
    args = parser.parse_args()
    people = tuple(args.people.split(",")) if args.people else (QUICK_PEOPLE if args.quick else None)
    frames = args.frames or (24 if args.quick else 48)
    every = args.every or (4 if args.quick else 3)
    suffix = ("_quick" if args.quick else "") + (f"_turn{args.turn:.0f}" if args.turn != 40.0 else "")
    sheet = Path(args.sheet) if args.sheet else None
    if args.sheet is None:
        sheet = RESULTS / f"likeness_worst{suffix}.png"
    result = run(people, frames, every, args.turn, sheet)
    text = json.dumps(result, indent=2)
    out = Path(args.json) if args.json else RESULTS / f"likeness{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(json.dumps({"overall": result["overall"], "done": result["done"]}, indent=2))


if __name__ == "__main__":
    main()
