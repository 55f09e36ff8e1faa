"""Simulated calls for checking the mark: natural moving content and what a recording goes through.

Used by the tests and the benchmark, and handy for a quick self-check on a new machine. The VP8 and
H.264 settings mirror aiortc's own encoders (realtime CBR VP8 with denoising, baseline zerolatency H.264),
because those are what a call's frames actually pass through.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable, Sequence

import cv2
import numpy as np


def sample_image(name: str = "astronaut") -> np.ndarray:
    """A scikit-image sample picture as uint8 BGR (grayscale samples are expanded)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., 2::-1].astype(np.uint8))


def panned_frames(
    image: np.ndarray, count: int, size: tuple[int, int] = (640, 480), speed: float = 1.0, start: int = 0
) -> list[np.ndarray]:
    """A slow pan and zoom over `image` (about a pixel of motion per frame at speed 1), BGR frames of `size`."""
    width, height = size
    src_h, src_w = image.shape[:2]
    frames = []
    for t in range(start, start + count):
        phase = t / 30.0 * speed
        zoom = 1.25 + 0.15 * np.sin(0.7 * phase)
        cx = src_w / 2 + 0.08 * src_w * np.sin(0.5 * phase)
        cy = src_h / 2 + 0.06 * src_h * np.sin(0.37 * phase + 1.0)
        scale = zoom * max(width / src_w, height / src_h)
        matrix = np.array([[scale, 0.0, width / 2 - scale * cx], [0.0, scale, height / 2 - scale * cy]])
        frames.append(cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def talking_head_frames(count: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[np.ndarray]:
    """A still background with the astronaut's head nodding and turning slightly, plus sensor noise."""
    width, height = size
    base = cv2.resize(sample_image("astronaut")[0:330, 60:500], (width, height), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros((height, width), np.float32)
    centre = (int(width * 0.42), int(height * 0.45))
    cv2.ellipse(mask, centre, (int(width * 0.22), int(height * 0.38)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 15)[..., None]
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(count):
        phase = t / 30.0
        angle = 3.0 * np.sin(2 * np.pi * 0.4 * phase)
        matrix = cv2.getRotationMatrix2D((width * 0.42, height * 0.6), angle, 1.0 + 0.02 * np.sin(phase))
        matrix[:, 2] += (6 * np.sin(2 * np.pi * 0.23 * phase), 4 * np.sin(2 * np.pi * 0.61 * phase))
        face = cv2.warpAffine(base, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        frame = base * (1 - mask) + face * mask + rng.normal(0, 2.0, (height, width, 1))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def _encoder(codec: str, width: int, height: int, bitrate: int, fps: int):
    import av

    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.bit_rate = bitrate
    enc.time_base = fractions.Fraction(1, fps)
    enc.framerate = fractions.Fraction(fps, 1)
    if codec == "libvpx":  # aiortc.codecs.vpx.Vp8Encoder
        enc.gop_size = 3000
        enc.qmin, enc.qmax = 2, 56
        enc.options = {
            "bufsize": str(bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "noise-sensitivity": "4",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
    else:  # aiortc.codecs.h264.H264Encoder
        enc.options = {"level": "31", "tune": "zerolatency"}
        enc.profile = "Baseline"
    return enc


def codec_round_trip(
    frames: Sequence[np.ndarray], codec: str = "libvpx", bitrate: int = 500_000, fps: int = 30
) -> tuple[list[np.ndarray], float]:
    """Encode BGR frames with PyAV (libvpx VP8 or libx264) and decode them again.

    Returns (decoded BGR frames, achieved bitrate in bits per second).
    """
    import av

    height, width = frames[0].shape[:2]
    enc = _encoder(codec, width, height, bitrate, fps)
    dec = av.CodecContext.create("vp8" if codec == "libvpx" else "h264", "r")
    out: list[np.ndarray] = []
    nbytes = 0

    def drain(packets) -> None:
        nonlocal nbytes
        for packet in packets:
            nbytes += packet.size
            out.extend(f.to_ndarray(format="bgr24") for f in dec.decode(packet))

    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        frame.time_base = enc.time_base
        drain(enc.encode(frame))
    drain(enc.encode(None))
    return out, nbytes * 8 * fps / len(frames)


def write_video(path: str, frames: Iterable[np.ndarray], codec: str = "libvpx", bitrate: int = 500_000, fps: int = 30) -> None:
    """Write BGR frames to a file (.webm for VP8, .mp4 for H.264) with the same call-like settings."""
    import av

    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        template = _encoder(codec, width, height, bitrate, fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.options = dict(template.options)
        if codec == "libvpx":
            stream.codec_context.gop_size = template.gop_size
            stream.codec_context.qmin, stream.codec_context.qmax = template.qmin, template.qmax
        else:
            stream.codec_context.profile = "Baseline"
        for image in [first, *frames]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))


def rescale(frames: Iterable[np.ndarray], factor: float) -> list[np.ndarray]:
    """Every frame resized by `factor` (area filter when shrinking, as players and re-uploads do)."""
    out = []
    for image in frames:
        h, w = image.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        out.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR))
    return out


def screen_capture(frames: Iterable[np.ndarray], factor: float = 0.875, blur: float = 0.8, gamma: float = 0.85) -> list[np.ndarray]:
    """What a screen recorder does to a call window: rescale, slight blur, a different tone curve."""
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).round().astype(np.uint8)
    out = []
    for image in rescale(frames, factor):
        out.append(cv2.LUT(cv2.GaussianBlur(image, (0, 0), blur), lut))
    return out
