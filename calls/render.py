"""Offline rendering: the same filters as a call, applied to a file, frame-accurate.

Every input frame gives one output frame at its own time (a variable-frame-rate phone video keeps its
timing: each frame's timestamp is carried over, not laid on a constant grid); the sound track is converted
as a whole (with the streaming converter's delay removed) and keeps its duration. A file with no sound
gives a silent-free video-only output and says so.

Failures are one line (MediaError) and leave nothing behind: the output is written to a hidden partial
file and renamed into place only when complete; an output that cannot be written (a folder, a missing
folder) is refused before any conversion starts.
"""

from __future__ import annotations

import os
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


def check_output(output_path: Path) -> None:
    """Refuse an output the render could not write, before the (slow) conversion starts."""
    if output_path.is_dir():
        raise MediaError(f"--output {output_path} is a folder: give a file name such as {output_path / 'out.mp4'}")
    folder = output_path.parent
    if not folder.is_dir():
        raise MediaError(f"the output folder {folder} does not exist: create it or give another --output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"the output folder {folder} is not writable: give another --output")


def _read_audio_track(path: Path) -> np.ndarray | None:
    """The input's first sound track as mono float32 at 48 kHz, or None when it has none."""
    try:
        return _decode_audio_track(path)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read the sound of {path} ({exc.__class__.__name__}): the file is corrupt or "
                         "cut short; re-export it as MP4") from exc


def _start_seconds(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base \
        else 0.0


def _decode_audio_track(path: Path) -> np.ndarray | None:
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
    check_output(output_path)
    assembly = CallAssembly(persona, choices)
    face = assembly.face()
    call_id = assembly.call_id
    mark = assembly.video_mark()
    samples = _read_audio_track(input_path)
    voice = convert_voice(assembly, samples) if samples is not None and samples.size \
        else None
    if voice is not None:  # the sound carries the same provenance as the picture
        from filters.watermark.voice import mark_track

        voice = mark_track(voice, assembly.persona_id, call_id, OUT_AUDIO_RATE)

    tmp = output_path.with_name(f".{output_path.name}.partial.mp4")
    frames = faces = 0
    spent = 0.0
    try:
        with av.open(str(input_path)) as src, av.open(str(tmp), "w", format="mp4") as dst:
            vin = src.streams.video[0]
            if vin.codec_context is None or not vin.codec_context.width or not vin.codec_context.height:
                raise MediaError(f"the video track of {input_path} cannot be decoded (its codec or size is "
                                 "unreadable): the file is corrupt; re-export it as MP4")
            rate = vin.average_rate or vin.guessed_rate or Fraction(30)
            total = vin.frames or None
            vout = dst.add_stream("libx264", rate=rate)
            # Each frame keeps its own time, in the input's time base: variable frame rate stays in sync.
            time_base = vin.time_base or Fraction(1, 90000)
            vout.codec_context.time_base = time_base
            # The output's sound starts at its first sample; the picture is timed from the same origin.
            origin = _start_seconds(src.streams.audio[0]) if voice is not None and src.streams.audio else None
            last_pts = -1
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
                    seconds = frame.time if frame.time is not None else frames / rate
                    if origin is None:
                        origin = seconds  # no sound: the first frame is time zero
                    pts = max(round((seconds - origin) / time_base), last_pts + 1)  # strictly increasing
                    vf.pts, vf.time_base, last_pts = pts, time_base, pts
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
    except (av.error.FFmpegError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        reason = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise MediaError(f"cannot render {input_path} ({reason}): the file may be corrupt or cut short; "
                         "re-export it as MP4") from exc
    except OSError as exc:  # the output folder vanished or filled up meanwhile
        tmp.unlink(missing_ok=True)
        raise MediaError(f"cannot write {output_path} ({exc.strerror or exc.__class__.__name__}): check the "
                         "folder and free space") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        face.close()
    if frames == 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{input_path} holds no decodable video frames: the file is corrupt or empty")
    try:
        tmp.replace(output_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"cannot write {output_path} ({exc.strerror or exc.__class__.__name__}): give another "
                         "--output") from exc
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
