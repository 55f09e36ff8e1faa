"""Offline rendering: the same filters as a call, applied to a file, frame-accurate.

Every input frame gives one output frame at the same rate; the sound track is converted as a whole
(with the streaming converter's delay removed) and keeps its duration. A file with no sound gives a
silent-free video-only output and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from calls.assembly import CallAssembly, CallChoices
from calls.sources import probe_media
from engine.errors import MediaError
from engine.persona import Persona

OUT_AUDIO_RATE = 48000


@dataclass
class RenderSummary:
    frames: int
    faces_found: int
    ms_per_frame: float
    audio_seconds: float | None
    output: Path
    call_id: str = ""

    def lines(self) -> list[str]:
        audio = (f"{self.audio_seconds:.2f} s of converted voice" if self.audio_seconds is not None
                 else "no audio track in the input: rendered video only")
        return [f"wrote {self.output} (watermarked as render {self.call_id})",
                f"{self.frames} frames, face found in {self.faces_found} "
                f"({100 * self.faces_found / max(self.frames, 1):.0f}%), {self.ms_per_frame:.1f} ms per frame",
                audio]


def _read_audio_track(path: Path) -> np.ndarray | None:
    """The input's first sound track as mono float32 at 48 kHz, or None when it has none."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=OUT_AUDIO_RATE)
        parts = [out.to_ndarray().reshape(-1) for frame in container.decode(stream)
                 for out in resampler.resample(frame)]
        parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def convert_voice(assembly: CallAssembly, samples: np.ndarray) -> np.ndarray:
    """The whole track through the same streaming converter a call uses, its delay removed: time-aligned."""
    from filters.voice.offline import convert_offline

    stream = assembly.voice(OUT_AUDIO_RATE)
    return convert_offline(stream.process, round(stream.latency_s * OUT_AUDIO_RATE), samples)


def render(persona: Persona, input_path: Path, output_path: Path, choices: CallChoices | None = None,
           progress: bool = True) -> RenderSummary:
    """Render `input_path` through the persona's filters into `output_path` (MP4, H.264 + AAC)."""
    input_path, output_path = Path(input_path), Path(output_path)
    probe_media(input_path)
    assembly = CallAssembly(persona, choices)
    face = assembly.face()
    call_id = assembly.call_id
    mark = assembly.video_mark()
    samples = _read_audio_track(input_path)
    voice = convert_voice(assembly, samples) if samples is not None and samples.size \
        else None

    tmp = output_path.with_name(f".{output_path.name}.partial.mp4")
    frames = faces = 0
    spent = 0.0
    try:
        with av.open(str(input_path)) as src, av.open(str(tmp), "w", format="mp4") as dst:
            vin = src.streams.video[0]
            rate = vin.average_rate or vin.guessed_rate or Fraction(30)
            total = vin.frames or None
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": "20", "preset": "veryfast"}
            aout = None
            if voice is not None:
                aout = dst.add_stream("aac", rate=OUT_AUDIO_RATE, layout="mono")
            bar = _progress_bar(progress, total)
            try:
                for frame in src.decode(vin):
                    image = frame.to_ndarray(format="bgr24")[: vout.height, : vout.width]
                    t0 = time.perf_counter()
                    out = face.process(image, float(frames / rate))
                    spent += time.perf_counter() - t0
                    faces += out.face_found
                    result = mark(out.image, frames)
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(result), format="bgr24")
                    vf.pts, vf.time_base = frames, 1 / rate
                    for packet in vout.encode(vf):
                        dst.mux(packet)
                    frames += 1
                    bar.advance()
            finally:
                bar.close()
            for packet in vout.encode(None):
                dst.mux(packet)
            if aout is not None:
                _encode_audio(dst, aout, voice)
    except av.error.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"cannot render {input_path} ({exc}): the file may be corrupt; re-export it as MP4") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        face.close()
    if frames == 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{input_path} holds no decodable video frames: the file is corrupt or empty")
    tmp.replace(output_path)
    assembly.record("render", strict=True, frames=frames, output=output_path.name)
    audio_s = None if voice is None else len(voice) / OUT_AUDIO_RATE
    return RenderSummary(frames, faces, 1000 * spent / frames, audio_s, output_path, call_id)


def _encode_audio(dst, stream, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    step = 1024
    for start in range(0, len(pcm), step):
        chunk = pcm[start:start + step].reshape(1, -1)
        af = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        af.sample_rate, af.pts, af.time_base = OUT_AUDIO_RATE, start, Fraction(1, OUT_AUDIO_RATE)
        for packet in stream.encode(af):
            dst.mux(packet)
    for packet in stream.encode(None):
        dst.mux(packet)


class _progress_bar:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self._progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeRemainingColumn,
            )

            self._progress = Progress("rendering", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                      transient=True)
            self._progress.start()
            self._task = self._progress.add_task("render", total=total)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
