"""How well each face mode can work for a persona, said in words, and the mode `--mode auto` picks.

The persona's photo (or clip) decides it: how much of each side of the face it shows (pose coverage),
how large the face is, and how sharp. Portrait mode shows her own photo, so it is as good as the photo is
large and sharp, whatever its pose. Swap mode draws her face from the unwrapped texture at the operator's
pose, so it also needs both sides of the face seen, or one side seen well enough to mirror; a strongly
turned photo leaves the far side to the mirror image, and a small or soft face gives a soft texture.
The thresholds come from the likeness benchmark (benchmarks/bench_likeness.py) on real faces.
"""

from __future__ import annotations

from dataclasses import dataclass

from filters.face.likeness import Likeness

GOOD_FACE_PX = 160  # face width (px) from which the texture is as sharp as a webcam frame can show
MIN_FACE_PX = 100
SOFT_SHARPNESS = 40.0  # Laplacian variance (face at 200 px) below which the photo reads as soft
SWAP_MAX_YAW = 30.0  # a photo turned further leaves too much of the face to the mirror for a convincing swap
COVERAGE_SEEN = 0.6  # share of a side of the face seen squarely enough to count as covered


@dataclass(frozen=True)
class ModeAdvice:
    """Grades 0..1 per mode, the mode auto picks, and one line per finding."""

    swap: float
    portrait: float
    auto: str
    lines: tuple[str, ...]

    def text(self) -> str:
        grades = f"swap {_word(self.swap)}, portrait {_word(self.portrait)}; --mode auto uses {self.auto}"
        return "\n".join([grades, *self.lines])


def _word(grade: float) -> str:
    return "good" if grade >= 0.75 else "fair" if grade >= 0.45 else "poor"


def advise(likeness: Likeness) -> ModeAdvice:
    """What the persona's likeness supports, and the mode auto picks (swap when it can be convincing)."""
    lines = []
    left, right = likeness.coverage()
    yaw = min((abs(y) for y in likeness.yaws), default=90.0)
    size = min(likeness.face_px / GOOD_FACE_PX, 1.0)
    sharp = min(likeness.sharpness / SOFT_SHARPNESS, 1.0)
    both_sides = left >= COVERAGE_SEEN and right >= COVERAGE_SEEN
    if likeness.face_px < GOOD_FACE_PX:
        lines.append(f"the face is {likeness.face_px:.0f} px wide: a photo where it is {GOOD_FACE_PX}+ px "
                     "gives a sharper face")
    if likeness.sharpness < SOFT_SHARPNESS:
        lines.append("the photo is soft (blurred or enlarged): a sharper photo gives a more lifelike face")
    if both_sides:
        lines.append(f"both sides of the face are seen (left {left:.0%}, right {right:.0%})")
    else:
        seen, unseen = ("left", "right") if left > right else ("right", "left")
        lines.append(f"the {unseen} side of the face is {min(left, right):.0%} seen: it is filled from the "
                     f"{seen} side's mirror image; a clip where the person turns both ways covers it")
    turn = 1.0 if both_sides or yaw <= SWAP_MAX_YAW else max(0.0, 1.0 - (yaw - SWAP_MAX_YAW) / 30.0)
    swap = round(min(size, sharp, turn), 2)
    portrait = round(min(size, max(sharp, 0.5)), 2)
    auto = "swap" if swap >= 0.75 else "portrait"
    if auto == "portrait":
        lines.append("swap mode would look less like her with this photo, so auto shows her portrait")
    return ModeAdvice(swap, portrait, auto, tuple(lines))


def persona_advice(persona) -> ModeAdvice:
    """The advice for a persona (its likeness is learnt and kept in its derived data if not there yet)."""
    from filters.face.likeness import likeness_for

    return advise(likeness_for(persona))


def _chosen(persona, models_dir, swap):
    """The face filter auto picks for this persona, with `mode` set to the mode it chose."""
    import logging

    advice = persona_advice(persona)
    logging.getLogger(__name__).info("face mode auto: %s (%s)", advice.auto, advice.text().splitlines()[0])
    if advice.auto == "portrait":
        from filters.face.portrait import for_persona as portrait

        chosen = portrait(persona, models_dir)
    else:
        chosen = swap(persona, models_dir)
    chosen.mode = advice.auto
    return chosen


def auto_embedded(persona, models_dir=None):
    """The registry's "auto" constructor for the embedded backend (filters/registry.py)."""
    from filters.face.swap import for_persona

    return _chosen(persona, models_dir, for_persona)


def auto_inswapper(persona, models_dir=None):
    """The registry's "auto" constructor for the inswapper backend: its swap when the photo supports one."""
    from filters.face.neural import for_persona

    return _chosen(persona, models_dir, for_persona)
