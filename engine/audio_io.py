"""Reading audio files of any common format and rate into mono float32, and resampling.

soundfile handles WAV/FLAC/OGG; anything else (MP3, M4A, a video's sound track) goes through PyAV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engine.errors import MediaError


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; a 1-D array is returned as float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality whole-signal resampling (soxr); a no-op when the rates match."""
    if rate_in == rate_out:
        return np.asarray(samples, dtype=np.float32)
    return soxr.resample(np.asarray(samples, dtype=np.float32), rate_in, rate_out).astype(np.float32)


def _read_with_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path} has no audio track: give a file with sound")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate or 48000)
            parts = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
            rate = resampler.rate
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many types for corrupt data
        raise MediaError(f"cannot read audio from {path} ({exc.__class__.__name__}): "
                         "convert it to WAV or check the file is complete") from exc
    if not parts:
        raise MediaError(f"{path} has an empty audio track: give a file with sound")
    return np.concatenate(parts).astype(np.float32), int(rate)


def read_audio(path: str | Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read `path` as mono float32; resample to `rate` when given. Returns (samples, sample_rate)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file not found: {path}")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
        samples = to_mono(data)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        samples, file_rate = _read_with_av(path)
    if rate is not None and rate != file_rate:
        samples, file_rate = resample(samples, file_rate, rate), rate
    return samples, int(file_rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    sf.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
