"""`evercall render` keeps frames and sound duration, and its faces are the persona's."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from calls.render import render
from engine.audio_io import read_audio
from engine.persona import VOICE_RATE
from benchmarks.identity import closer_to_persona
from tests.voice_likeness import pitch_verdict


def _probe(path: Path) -> tuple[list[np.ndarray], float | None, Fraction]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        rate = c.streams.video[0].average_rate
    audio = None
    with av.open(str(path)) as c:
        if c.streams.audio:
            n = sum(f.samples for f in c.decode(audio=0))
            audio = n / c.streams.audio[0].rate
    return frames, audio, rate


@pytest.fixture(scope="module")
def rendered(demo, demo_persona, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("render") / "out.mp4"
    summary = render(demo_persona, demo.operator_clip, out, progress=False)
    return out, summary


def test_render_keeps_frame_count_rate_and_audio_duration(demo, rendered) -> None:
    out, summary = rendered
    src_frames, src_audio, src_rate = _probe(demo.operator_clip)
    dst_frames, dst_audio, dst_rate = _probe(out)
    assert len(dst_frames) == len(src_frames) == summary.frames
    assert dst_rate == src_rate
    assert src_audio is not None and dst_audio is not None
    assert abs(dst_audio - src_audio) <= 0.02, (src_audio, dst_audio)
    assert "frames" in " ".join(summary.lines())


def test_rendered_faces_are_the_personas(demo, demo_persona, rendered) -> None:
    out, _ = rendered
    frames, _, _ = _probe(out)
    faced, closer = closer_to_persona(frames[::4], demo_persona.photo, cv2.imread(str(demo.operator_photo)))
    assert faced >= len(frames[::4]) // 2, "most output frames should show a face"
    assert closer >= 0.9 * faced, f"{closer}/{faced} output faces are closer to the persona"


def test_rendered_voice_is_converted_toward_the_personas(demo, demo_persona, rendered) -> None:
    out, _ = rendered
    heard, rate = read_audio(out)
    operator, operator_rate = read_audio(demo.operator_clip)
    assert float(np.sqrt(np.mean(heard ** 2))) > 0.01, "converted voice should be audible"
    verdict = pitch_verdict(heard, rate, demo_persona.voice, VOICE_RATE, operator, operator_rate)
    unchanged = pitch_verdict(operator, operator_rate, demo_persona.voice, VOICE_RATE, operator, operator_rate)
    assert abs(unchanged.toward_persona) < 0.1, f"the judge must fail the operator's own voice: {unchanged}"
    assert verdict.toward_persona > 0.6, f"rendered voice: {verdict}"


def test_video_without_audio_renders_and_says_so(demo, demo_persona, tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    with av.open(str(demo.operator_clip)) as src, av.open(str(silent), "w") as dst:
        stream = dst.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 20:
                break
            new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
            for p in stream.encode(new):
                dst.mux(p)
        for p in stream.encode(None):
            dst.mux(p)
    out = tmp_path / "out.mp4"
    summary = render(demo_persona, silent, out, progress=False)
    frames, audio, _ = _probe(out)
    assert len(frames) == 20 and audio is None
    assert any("no audio track" in line for line in summary.lines())


def test_render_is_watermarked_and_traced_to_its_audit_record(demo, rendered, capsys) -> None:
    from calls.cli import main

    out, summary = rendered
    assert main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "was made by evercall" in text
    assert f"call {summary.call_id}" in text and "render" in text
    assert main(["verify", str(demo.operator_clip)]) == 1, "the unconverted input carries no mark"
    assert "no evercall mark" in capsys.readouterr().out
