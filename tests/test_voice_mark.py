"""The voice provenance mark: found after what a recording goes through, never in unmarked sound, and
`evercall verify` names the call from an audio file.

The thousand-clip false-find count, cost per block and recogniser check live in benchmarks/bench_voice_mark.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks.voice_samples import FEMALE, MALE, OPERATOR_TEXT, PERSONA_TEXT, have_espeak, speak
from engine.audio_io import resample, write_wav
from filters.watermark.embed import make_payload
from filters.watermark.voice import (
    VoiceMarkEmbedder,
    detect_audio,
    mark_track,
    signal_to_mark_db,
)
from filters.watermark.voice_sim import mp3, opus, to_16k

pytestmark = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng for test speech")

RATE = 48000
PERSONA, CALL = "persona/test-voice-mark", "call/0123456789abcdef"
PAYLOAD = make_payload(PERSONA, CALL)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 12 s of a man's synthetic speech at 48 kHz, at a normal speaking level."""
    x = speak(OPERATOR_TEXT, MALE, tmp_path_factory.mktemp("speech"), "operator")
    x = resample(x, 16000, RATE)
    return (x * (0.1 / np.sqrt(np.mean(x**2)))).astype(np.float32)


@pytest.fixture(scope="module")
def marked(speech: np.ndarray) -> np.ndarray:
    return mark_track(speech, PERSONA, CALL, RATE)


def _found_share(samples: np.ndarray, rate: int) -> float:
    windows = detect_audio(samples, rate)
    assert windows, "the clip should hold at least one window"
    assert not any(w.found and w.payload != PAYLOAD for w in windows), "a wrong payload must never be found"
    return sum(w.found for w in windows) / len(windows)


def test_mark_is_quiet_under_the_voice_and_adds_no_delay(speech: np.ndarray, marked: np.ndarray) -> None:
    assert marked.shape == speech.shape
    smr = signal_to_mark_db(speech, marked, RATE)
    assert smr > 19.0, f"the mark should sit about 20 dB under the voice, got {smr:.1f} dB"
    # No delay: the marked voice lines up with the voice sample for sample.
    assert np.corrcoef(speech, marked)[0, 1] > 0.99


@pytest.mark.parametrize("transform", ["opus_lowdelay_10ms_24k", "opus_audio_20ms_24k", "opus_voip_10ms_24k",
                                       "resample_16k", "mp3_64k"])
def test_mark_survives_codecs_and_resampling_from_any_start(marked: np.ndarray, transform: str) -> None:
    # Start mid-template, at a sample no block or segment boundary lines up with, 3 dB quieter.
    clip = marked[12_345:] * np.float32(10 ** (-3 / 20))
    if transform == "opus_lowdelay_10ms_24k":
        out, rate = opus(clip, 24000, 10, "lowdelay"), RATE
    elif transform == "opus_voip_10ms_24k":  # SILK, the hardest: a messenger forwarding a recording
        out, rate = opus(clip, 24000, 10, "voip"), RATE
    elif transform == "opus_audio_20ms_24k":
        out, rate = opus(clip, 24000, 20, "audio"), RATE
    elif transform == "resample_16k":
        out, rate = to_16k(clip), 16000
    else:
        if not _has_encoder("libmp3lame"):
            pytest.skip("PyAV here has no MP3 encoder")
        out, rate = mp3(clip), RATE
    assert _found_share(out, rate) == 1.0


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def test_mark_runs_through_silence() -> None:
    """A muted stretch or a card still carries the mark (a faint floor), block by block as in a call."""
    embedder = VoiceMarkEmbedder(PAYLOAD, RATE)
    silence = np.zeros(4 * RATE, np.float32)
    out = np.concatenate([embedder.process(silence[i:i + 480]) for i in range(0, len(silence), 480)])
    assert float(np.sqrt(np.mean(out**2))) < 10 ** (-60 / 20), "the floor must be far below hearing at call level"
    assert _found_share(out, RATE) == 1.0


def test_no_false_find_on_unmarked_sound(speech: np.ndarray, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    other = resample(speak(PERSONA_TEXT, FEMALE, tmp_path, "persona"), 16000, RATE)
    t = np.arange(3 * RATE) / RATE
    clips = [speech[s:s + 3 * RATE] for s in rng.integers(0, len(speech) - 3 * RATE, 8)]
    clips += [other[s:s + 3 * RATE] for s in rng.integers(0, len(other) - 3 * RATE, 8)]
    clips += [rng.standard_normal(3 * RATE).astype(np.float32) * 0.05 for _ in range(4)]
    clips += [np.sin(2 * np.pi * f * t).astype(np.float32) * 0.2 for f in (220.0, 1000.0, 3150.0)]
    # Speech marked with another key is not ours either.
    clips.append(VoiceMarkEmbedder(PAYLOAD, RATE, key=b"someone-else").process(speech[: 3 * RATE]))
    results = [w for clip in clips for w in detect_audio(clip, RATE)]
    assert len(results) == len(clips)
    assert not any(w.found for w in results)


def test_verify_names_the_call_from_a_wav_and_says_no_mark_for_plain_speech(
        speech: np.ndarray, marked: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from calls.cli import main
    from engine.home import audit_log

    audit_log().append("render", persona=PERSONA, call=CALL)
    wav = tmp_path / "call.wav"
    write_wav(wav, marked, RATE)
    assert main(["verify", str(wav)]) == 0
    text = capsys.readouterr().out
    assert "was made by evercall" in text
    found = re.search(r"voice mark found in (\d+) of (\d+) three-second windows", text)
    assert found and found.group(1) == found.group(2), text
    assert f"call {CALL}" in text

    plain = tmp_path / "plain.wav"
    write_wav(plain, speech, RATE)
    assert main(["verify", str(plain)]) == 1
    text = capsys.readouterr().out
    assert "no evercall mark" in text and "found in" not in text


async def test_mark_survives_the_far_end_voice_hold(speech: np.ndarray) -> None:
    """On a lossy path the relay holds her voice back, putting in a frame of silence or leaving a quiet one
    out in pauses (calls/tracks.py). The mark goes on after that, so every window of what she receives
    still names the call however often the hold moves."""
    import asyncio

    from calls.network import VoiceHold
    from calls.tracks import PersonaAudioTrack
    from engine.media import now
    from engine.stages import AudioRing
    from filters.watermark.voice import voice_provenance_mark

    frame = RATE // 100
    ring = AudioRing(RATE, capacity_s=0.3, on_read=voice_provenance_mark(PERSONA, CALL, RATE))
    hold = VoiceHold()
    track = PersonaAudioTrack(ring, frame=frame, grace_s=10.0, hold=hold)
    sent, held, moves = [], 0.0, 0
    for i in range(len(speech) // frame):
        if i % 50 == 0:  # asked to move every half second, 0-60 ms (the hold moves only in pauses)
            hold.target_ms = float(20 * ((i // 50) % 4))
        ring.write(speech[i * frame:(i + 1) * frame], now())
        got = await asyncio.wait_for(track.recv(), 10.0)
        sent.append(got.to_ndarray().reshape(-1).astype(np.float32) / 32767)
        moves += track.held_ms != held
        held = track.held_ms
    assert moves >= 6, f"the hold should have moved several times, moved {moves}"
    assert _found_share(np.concatenate(sent), RATE) == 1.0, "every window should still name the call"
