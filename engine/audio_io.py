"""Reading audio files of any common format and rate into mono float32, and resampling.

soundfile handles WAV/FLAC/OGG; anything else (MP3, M4A, a video's sound track) goes through PyAV.
With `max_seconds`, a longer file is refused from its header, before it is decoded; a file whose header
does not say (or lies) is refused as soon as decoding passes the limit, so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from engine.errors import MediaError


class TooLong(MediaError):
    """The audio lasts longer than the caller accepts; `seconds` is how long it is (at least)."""

    def __init__(self, path: Path, seconds: float, limit: float) -> None:
        self.seconds, self.limit = seconds, limit
        super().__init__(f"audio file {path} is {seconds / 60:.1f} minutes long, over the limit of "
                         f"{limit / 60:g} minutes: cut it shorter")


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


def _read_with_av(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path} has no audio track: give a file with sound")
            stream = container.streams.audio[0]
            if max_seconds is not None:
                declared = _declared_seconds(container, stream)
                if declared is not None and declared > max_seconds:
                    raise TooLong(path, declared, max_seconds)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate or 48000)
            parts = []
            decoded = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    decoded += parts[-1].size
                if max_seconds is not None and decoded > max_seconds * resampler.rate + resampler.rate:
                    raise TooLong(path, decoded / resampler.rate, max_seconds)
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


def _declared_seconds(container, stream) -> float | None:
    """How long the file says its sound lasts (stream header, else container), without decoding."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def read_audio(path: str | Path, rate: int | None = None,
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read `path` as mono float32; resample to `rate` when given. Returns (samples, sample_rate).

    With `max_seconds`, raise TooLong for a longer file, judged from its header before decoding."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        info = None
    if info is not None and info.samplerate > 0:
        if max_seconds is not None and info.frames / info.samplerate > max_seconds:
            raise TooLong(path, info.frames / info.samplerate, max_seconds)
        limit = -1 if max_seconds is None else int(max_seconds * info.samplerate) + 1  # a lying header too
        try:
            data, file_rate = sf.read(str(path), frames=limit, dtype="float32", always_2d=True)
            samples = to_mono(data)
        except (sf.LibsndfileError, RuntimeError, TypeError):
            samples, file_rate = _read_with_av(path, max_seconds)
    else:
        samples, file_rate = _read_with_av(path, max_seconds)
    if rate is not None and rate != file_rate:
        samples, file_rate = resample(samples, file_rate, rate), rate
    return samples, int(file_rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    sf.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
