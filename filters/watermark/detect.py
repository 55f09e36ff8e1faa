"""Detection: per-frame soft bits, summed over one-second windows, Viterbi-decoded and CRC-checked.

No frame sync is needed because every frame carries the same codeword. Each frame is area-averaged onto
the canonical grid first, so any resolution with the marked video's aspect ratio works. A window counts as
found only if the decoded payload passes the key-salted CRC-32: for an unmarked video (or another key) the
decoder's output is effectively random, so a false find has probability 2**-32 per window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import MediaError
from filters.watermark.coding import CODED_BITS, check_info, conv_encode, crc_salt, info_bits, viterbi_decode
from filters.watermark.embed import DEFAULT_KEY, _id_hash
from filters.watermark.layout import layout_for, luma_grid


@dataclass(frozen=True)
class WindowResult:
    """Outcome for one window of frames.

    `score` is the correlation (-1..1) between the window's soft bits and the decoded codeword: near 1 for
    a clean mark, roughly 0.2-0.4 for noise (the decoder always fits something), lower after heavy coding.
    """

    start_frame: int
    frame_count: int
    found: bool
    payload: bytes | None
    score: float

    @property
    def persona_hash(self) -> str | None:
        return self.payload[:4].hex() if self.payload else None

    @property
    def call_hash(self) -> str | None:
        return self.payload[4:].hex() if self.payload else None


@dataclass(frozen=True)
class VerifyReport:
    """What a video file proves: whether it carries an evercall mark, and for which persona and call."""

    path: str
    fps: float
    frame_count: int
    windows: list[WindowResult] = field(repr=False)
    whole: WindowResult  # all frames decoded together: catches marks too weak for any single window
    found: bool
    payload: bytes | None
    fraction_found: float

    @property
    def persona_hash(self) -> str | None:
        return self.payload[:4].hex() if self.payload else None

    @property
    def call_hash(self) -> str | None:
        return self.payload[4:].hex() if self.payload else None

    def matches(self, persona_id: str, call_id: str) -> bool:
        """Whether the mark names this persona and call (see `make_payload`)."""
        return self.payload == _id_hash("persona", persona_id) + _id_hash("call", call_id)


class Detector:
    """Soft bits per frame and payload decoding for one key."""

    def __init__(self, key: bytes = DEFAULT_KEY) -> None:
        self.key = bytes(key)
        self._layout = layout_for(self.key)
        self._salt = crc_salt(self.key)

    def soft_bits(self, image: np.ndarray) -> np.ndarray:
        """(CODED_BITS,) values in [-1, 1]; positive leans towards a coded 0."""
        return self._layout.soft_bits(luma_grid(image))

    def decode(self, soft_sum: np.ndarray) -> tuple[bytes | None, float]:
        """(payload or None, score) for soft bits summed over any number of frames."""
        bits = viterbi_decode(soft_sum)
        payload = check_info(bits, self._salt)
        codeword = conv_encode(bits)
        norm = float(np.abs(soft_sum).sum())
        score = float(soft_sum @ (1.0 - 2.0 * codeword)) / norm if norm > 0 else 0.0
        return payload, score


def _windows(frames: Iterable[np.ndarray], fps: float, detector: Detector) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start_frame, frame_count, soft_sum) per window of round(fps) frames; a tail under half a window is dropped."""
    size = max(1, int(round(fps)))
    acc = np.zeros(CODED_BITS)
    start = count = 0
    for index, frame in enumerate(frames):
        if count == 0:
            start = index
        acc += detector.soft_bits(frame)
        count += 1
        if count == size:
            yield start, count, acc
            acc, count = np.zeros(CODED_BITS), 0
    if count and count * 2 >= size:
        yield start, count, acc


def _result(detector: Detector, start: int, count: int, soft_sum: np.ndarray) -> WindowResult:
    payload, score = detector.decode(soft_sum)
    return WindowResult(start_frame=start, frame_count=count, found=payload is not None, payload=payload, score=score)


def detect_frames(frames: Iterable[np.ndarray], fps: float = 30.0, key: bytes = DEFAULT_KEY) -> list[WindowResult]:
    """Per one-second window: whether the mark is there and which payload it carries."""
    detector = Detector(key)
    return [_result(detector, s, n, acc) for s, n, acc in _windows(frames, fps, detector)]


def _decoded_frames(path: Path) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")


def verify_video(path: str | Path, key: bytes = DEFAULT_KEY) -> VerifyReport:
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
    detector = Detector(key)
    windows: list[WindowResult] = []
    total = np.zeros(CODED_BITS)
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
    if found_payloads:
        values, counts = np.unique(np.array(found_payloads, dtype=object), return_counts=True)
        payload = values[int(np.argmax(counts))]
    else:
        payload = whole.payload
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
