"""Detection: per-frame soft bits, summed over one-second windows, Viterbi-decoded and CRC-checked.

No frame sync is needed because every frame carries the same codeword. Each frame is area-averaged onto
the canonical grid first, so any resolution with the marked video's aspect ratio works.

The lattice decoder tolerates about +/-0.1 of gamma and +/-3 % of contrast. Screen recordings and
limited/full-range mix-ups change the tone curve by more, so each frame is also read under a small set of
candidate tone curves (5 gammas x 9 contrasts, covering gamma 0.65-1.5 and contrast 0.8-1.25), and a
window is decoded under each until one passes the CRC. The Viterbi decoder runs all 45 in one batch.

A window counts as found only if the decoded payload passes the key-salted CRC-32. For an unmarked video
(or another key) each decode attempt passes with probability 2**-32, so with 45 attempts per window a false
find has probability below 45 * 2**-32 = 1.05e-8 per window (1e-5 over 1000 windows).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import MediaError
from filters.watermark.coding import CODED_BITS, check_info, conv_encode, crc_salt, viterbi_decode
from filters.watermark.embed import DEFAULT_KEY, make_payload
from filters.watermark.layout import coarse, fine_luma, layout_for

# The lattice decoder tolerates about +/-0.1 of gamma but only +/-3 % of contrast, hence the finer gain steps.
_GAMMAS = (1.0, 0.85, 1.18, 0.72, 1.4)
_GAINS = tuple(1.05**k for k in (0, 1, -1, 2, -2, 3, -3, 4, -4))  # 0.82 .. 1.22
# (gamma, contrast) pairs that the received picture may have gone through, nearest to untouched first.
TONE_CANDIDATES: tuple[tuple[float, float], ...] = tuple(
    sorted(((g, k) for g in _GAMMAS for k in _GAINS), key=lambda c: abs(np.log(c[0])) + abs(np.log(c[1])))
)


class _NamesPayload:
    """The two halves of a found payload (see `make_payload`), as hex; None when nothing was found."""

    payload: bytes | None

    @property
    def persona_hash(self) -> str | None:
        return self.payload[:4].hex() if self.payload else None

    @property
    def call_hash(self) -> str | None:
        return self.payload[4:].hex() if self.payload else None

    def matches(self, persona_id: str, call_id: str) -> bool:
        """Whether the mark names this persona and call (see `make_payload`)."""
        return self.payload == make_payload(persona_id, call_id)


@dataclass(frozen=True)
class WindowResult(_NamesPayload):
    """Outcome for one window of frames.

    `found` is decided by the CRC alone. `score` is the correlation (-1..1) between the window's soft bits
    and the decoded codeword: 1.0 when every coded bit agrees. It shows how much margin a found mark had;
    it is no test for presence, because a still unmarked picture also gives consistent (wrong) bits and
    scores about 0.8. `tone` is the (gamma, contrast) candidate that decoded, (1.0, 1.0) for untouched.
    """

    start_frame: int
    frame_count: int
    found: bool
    payload: bytes | None
    score: float
    tone: tuple[float, float] | None = None


@dataclass(frozen=True)
class VerifyReport(_NamesPayload):
    """What a video file proves: whether it carries an evercall mark, and for which persona and call."""

    path: str
    fps: float
    frame_count: int
    windows: list[WindowResult] = field(repr=False)
    whole: WindowResult  # all frames decoded together: catches marks too weak for any single window
    found: bool
    payload: bytes | None
    fraction_found: float


class Detector:
    """Soft bits per frame and payload decoding for one key."""

    def __init__(self, key: bytes = DEFAULT_KEY, tone_search: bool = True) -> None:
        self.key = bytes(key)
        self._layout = layout_for(self.key)
        self._salt = crc_salt(self.key)
        self.candidates = TONE_CANDIDATES if tone_search else ((1.0, 1.0),)
        self._gammas = sorted({g for g, _ in self.candidates}, key=lambda g: abs(np.log(g)))
        self._rows = np.array([self._gammas.index(g) for g, _ in self.candidates])
        self._gains = np.array([k for _, k in self.candidates])

    def soft_bits(self, image: np.ndarray) -> np.ndarray:
        """(len(candidates), CODED_BITS) values in [-1, 1], one row per tone candidate.

        Positive leans towards a coded 0. Undoing a gamma is done on the fine grid; a contrast change only
        scales the (linear) statistics, so it costs nothing extra.
        """
        fine = fine_luma(image)
        levels = fine * np.float32(1.0 / 255.0)
        stack = np.stack([fine if g == 1.0 else 255.0 * np.power(levels, np.float32(1.0 / g)) for g in self._gammas])
        stats = self._layout.statistics(coarse(stack))  # (gammas, CODED_BITS)
        return self._layout.soft_bits(stats[self._rows] / self._gains[:, None])

    def decode(self, soft_sums: np.ndarray) -> tuple[bytes | None, float, tuple[float, float] | None]:
        """(payload, score, tone) from the first candidate whose summed soft bits pass the CRC.

        `soft_sums` is (len(candidates), CODED_BITS), or (CODED_BITS,) for the untouched tone only. When no
        candidate passes: (None, the untouched candidate's score, None).
        """
        soft_sums = np.atleast_2d(soft_sums)
        decoded = viterbi_decode(soft_sums)
        for row, bits, tone in zip(soft_sums, decoded, self.candidates):
            payload = check_info(bits, self._salt)
            if payload is not None:
                return payload, self._score(row, bits), tone
        return None, self._score(soft_sums[0], decoded[0]), None

    @staticmethod
    def _score(soft_sum: np.ndarray, bits: np.ndarray) -> float:
        norm = float(np.abs(soft_sum).sum())
        return float(soft_sum @ (1.0 - 2.0 * conv_encode(bits))) / norm if norm > 0 else 0.0


def _windows(frames: Iterable[np.ndarray], fps: float, detector: Detector) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start_frame, frame_count, soft_sums) per window of round(fps) frames; a tail under half a window is dropped."""
    size = max(1, int(round(fps)))
    shape = (len(detector.candidates), CODED_BITS)
    acc = np.zeros(shape)
    start = count = 0
    for index, frame in enumerate(frames):
        if count == 0:
            start = index
        acc += detector.soft_bits(frame)
        count += 1
        if count == size:
            yield start, count, acc
            acc, count = np.zeros(shape), 0
    if count and count * 2 >= size:
        yield start, count, acc


def _result(detector: Detector, start: int, count: int, soft_sums: np.ndarray) -> WindowResult:
    payload, score, tone = detector.decode(soft_sums)
    return WindowResult(
        start_frame=start, frame_count=count, found=payload is not None, payload=payload, score=score, tone=tone
    )


def detect_frames(
    frames: Iterable[np.ndarray], fps: float = 30.0, key: bytes = DEFAULT_KEY, tone_search: bool = True
) -> list[WindowResult]:
    """Per one-second window: whether the mark is there and which payload it carries."""
    detector = Detector(key, tone_search)
    return [_result(detector, s, n, acc) for s, n, acc in _windows(frames, fps, detector)]


def _decoded_frames(path: Path) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")


def verify_video(path: str | Path, key: bytes = DEFAULT_KEY, tone_search: bool = True) -> VerifyReport:
    """Decode a video file with PyAV and report the mark per one-second window and overall."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"No video at {path}: check the path.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream: pass the recorded call video.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 30
    except av.error.FFmpegError as exc:
        raise MediaError(f"Cannot read {path} as video ({exc}): pass an intact video file.") from exc
    fps = float(rate)
    detector = Detector(key, tone_search)
    windows: list[WindowResult] = []
    total = np.zeros((len(detector.candidates), CODED_BITS))
    frame_count = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal frame_count
        for image in _decoded_frames(path):
            frame_count += 1
            yield image

    try:
        for start, count, acc in _windows(counted(), fps, detector):
            windows.append(_result(detector, start, count, acc))
            total += acc
    except av.error.FFmpegError as exc:
        raise MediaError(f"Decoding {path} failed ({exc}): pass an intact video file.") from exc
    whole = _result(detector, 0, frame_count, total)
    found_payloads = [w.payload for w in windows if w.found]
    # Windows of a spliced video may carry different payloads: report the most common one.
    payload = Counter(found_payloads).most_common(1)[0][0] if found_payloads else whole.payload
    return VerifyReport(
        path=str(path),
        fps=fps,
        frame_count=frame_count,
        windows=windows,
        whole=whole,
        found=payload is not None,
        payload=payload,
        fraction_found=len(found_payloads) / len(windows) if windows else 0.0,
    )
