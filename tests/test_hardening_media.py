"""Bad files and careless paths (issue 14, items 5, 6, 7, 8, 10): refused before decoding, with one line.

Each test failed before the hardening: huge voice samples and photos were decoded first, a group photo
silently used one face, NaN audio was called "silent", VFR video drifted from its sound, and render
left tracebacks and partial files for truncated inputs and unusable output paths.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from engine.errors import MediaError, PersonaError
from engine.persona import MAX_VOICE_SECONDS, choose_face, read_photo, read_voice

ROOT = Path(__file__).resolve().parents[1]


def one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


def long_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A WAV whose header says `seconds`, written in blocks (only the header is meant to be read)."""
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        block = np.zeros(rate * 60, np.int16)
        for _ in range(int(seconds // 60)):
            out.write(block)
    return path


# -- 5. unbounded inputs ----------------------------------------------------------------------------


def refused_with_peak(read, path: Path):
    """(the PersonaError `read(path)` raised, the most memory Python allocated meanwhile in bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(PersonaError) as err:
            read(path)
        return err, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_hour_of_voice_is_refused_from_its_header(tmp_path: Path) -> None:
    wav = long_wav(tmp_path / "hour.wav", 3600)
    err, peak = refused_with_peak(read_voice, wav)
    text = one_line(str(err.value))
    assert "60.0 minutes" in text and "limit of 10 minutes" in text
    assert peak < 20e6, f"{peak / 1e6:.0f} MB were allocated: the file was decoded before it was refused"


def test_a_long_compressed_voice_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "long.m4a"  # not soundfile's: read through PyAV, whose header gives the duration
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000, layout="mono")
        block = np.zeros((1, 8000 * 10), np.int16)
        for i in range(int(MAX_VOICE_SECONDS + 30) // 10):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 8000, i * block.shape[1], Fraction(1, 8000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(PersonaError) as err:
        read_voice(path)
    assert "limit of 10 minutes" in one_line(str(err.value))


def test_a_huge_photo_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "huge.png"
    Image.new("L", (12000, 12000)).save(path, optimize=False)  # 144 MP, a few hundred kB on disk
    err, peak = refused_with_peak(read_photo, path)
    text = one_line(str(err.value))
    assert "12000x12000" in text and "limit of 40 megapixels" in text
    assert peak < 20e6, f"{peak / 1e6:.0f} MB were allocated: the photo was decoded before it was refused"


def test_nan_and_infinite_samples_are_named_as_such(tmp_path: Path) -> None:
    t = np.arange(5 * 16000) / 16000
    samples = (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    samples[1000:1100] = np.nan
    samples[5000] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(str(path), samples, 16000, subtype="FLOAT")
    with pytest.raises(PersonaError) as err:
        read_voice(path)
    text = one_line(str(err.value))
    assert "NaN" in text and "silent" not in text


# -- 6. several faces ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_people() -> np.ndarray:
    """A small face on the left (the astronaut), a larger one on the right (Grace Hopper)."""
    import matplotlib.cbook as cbook
    from skimage import data

    left = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (400, 400))
    right = cv2.resize(cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), (400, 400))
    return np.concatenate([left, right], axis=1)


def test_a_group_photo_uses_the_largest_face_and_says_so(two_people) -> None:
    choice = choose_face(two_people)
    assert choice.count == 2 and choice.index == 2
    assert "2 faces" in choice.note and "--face" in choice.note and "largest" in choice.note
    assert choice.photo.shape[1] < two_people.shape[1]
    crop_faces = choose_face(choice.photo)
    assert crop_faces.count == 1, "the crop leaves only the chosen face"


def test_face_n_picks_another_and_a_wrong_n_is_refused(two_people) -> None:
    choice = choose_face(two_people, face=1)
    assert choice.index == 1 and "as asked" in choice.note
    left = two_people[:, :400]
    overlap = cv2.matchTemplate(left, choice.photo[: min(choice.photo.shape[0], 400), :200], cv2.TM_CCOEFF_NORMED)
    assert overlap.max() > 0.9, "face 1 is the one on the left"
    with pytest.raises(PersonaError) as err:
        choose_face(two_people, face=3)
    assert "shows 2 faces" in one_line(str(err.value))


# -- 7. variable frame rate --------------------------------------------------------------------------


def vfr_clip(path: Path) -> list[float]:
    """A 3 s clip whose frames come at irregular times (as a phone writes them), with sound."""
    times, t = [], 0.0
    rng = np.random.default_rng(1)
    while t < 3.0:
        times.append(t)
        t += float(rng.choice([1 / 60, 1 / 30, 1 / 15, 0.1]))
    base = Fraction(1, 1000)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.codec_context.time_base = base
        audio = out.add_stream("aac", rate=48000, layout="mono")
        for i, when in enumerate(times):
            image = np.full((120, 160, 3), (i * 37) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = round(when * 1000), base
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        sound = (0.2 * np.sin(2 * np.pi * 200 * np.arange(3 * 48000) / 48000) * 32767).astype(np.int16)
        for start in range(0, sound.size, 1024):
            chunk = av.AudioFrame.from_ndarray(sound[start:start + 1024].reshape(1, -1), format="s16", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, start, Fraction(1, 48000)
            for packet in audio.encode(chunk):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    with av.open(str(path)) as src:
        return [float(f.time) for f in src.decode(video=0)]


def test_variable_frame_rate_keeps_each_frames_time(tmp_path: Path, demo_persona) -> None:
    from calls.render import render

    source = tmp_path / "vfr.mp4"
    times_in = vfr_clip(source)
    out = tmp_path / "out.mp4"
    render(demo_persona, source, out, progress=False)
    with av.open(str(out)) as result:
        times_out = [float(f.time) for f in result.decode(video=0)]
    assert len(times_out) == len(times_in)
    skew = max(abs(a - b) for a, b in zip(times_in, times_out))
    assert skew <= 1 / 60, f"frames drift up to {1000 * skew:.0f} ms from their input times (and the voice)"


# -- 8. render errors ------------------------------------------------------------------------------------


def cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if home is not None:
        env["EVERCALL_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "calls.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    return lines[0]


def cut_upload(source: Path, folder: Path) -> Path:
    """The clip as a phone uploads it (index first), cut off and with a few damaged bytes before the cut:
    it still opens, and its sound fails while decoding (PyAV's InvalidDataError)."""
    import random

    full = folder / "full.mp4"
    with av.open(str(source)) as src, av.open(str(full), "w", format="mp4", options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux():
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    original = full.read_bytes()
    full.unlink()
    rng = random.Random(0)
    cut = folder / "cut.mp4"
    for _ in range(300):
        data = bytearray(original[: rng.randrange(len(original) // 20, len(original))])
        for _ in range(rng.randrange(0, 4)):
            spot = rng.randrange(len(data) // 50, len(data))
            data[spot] ^= rng.randrange(1, 256)
        cut.write_bytes(bytes(data))
        try:
            with av.open(str(cut)) as container:
                if not container.streams.video or not container.streams.audio:
                    continue
                for _frame in container.decode(audio=0):
                    pass
        except av.error.InvalidDataError:
            return cut
        except av.error.FFmpegError:
            continue
    raise AssertionError("no damaged upload found")


def test_truncated_mp4_is_one_line_and_leaves_nothing(tmp_path: Path, demo) -> None:
    cut = cut_upload(Path(demo.operator_clip), tmp_path)
    out = tmp_path / "out.mp4"
    line = assert_one_line_exit_2(cli("render", "--demo", "--input", str(cut), "--output", str(out)))
    assert "cut.mp4" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"], "no output, no partial file"


def test_output_that_is_a_folder_or_in_a_missing_folder_is_refused_first(tmp_path: Path, demo,
                                                                         demo_persona) -> None:
    from calls.render import render

    folder = tmp_path / "already-a-folder"
    folder.mkdir()
    with pytest.raises(MediaError) as err:
        render(demo_persona, demo.operator_clip, folder, progress=False)
    assert "is a folder" in one_line(str(err.value))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["already-a-folder"], "no partial file left behind"
    missing = tmp_path / "no-such-folder" / "out.mp4"
    with pytest.raises(MediaError) as err:
        render(demo_persona, demo.operator_clip, missing, progress=False)
    text = one_line(str(err.value))
    assert "no-such-folder" in text and "does not exist" in text and str(demo.operator_clip) not in text
