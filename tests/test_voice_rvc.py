"""The RVC-style neural voice backend, on tiny ONNX stand-ins with the real models' signatures.

The stand-ins (built by tests/tiny_models.py with onnx.helper, a few kB each) keep the registry's tensor names, ranks and
dynamic axes, and do simple arithmetic that makes the pipeline's timing observable:

- content encoder: per 20 ms of audio, its mean absolute value, in all 768 channels;
- pitch model: TONE_HZ where a 10 ms frame is louder than -60 dBFS, else 0 (unvoiced);
- decoder (40 kHz): a sine at the given pitch whose amplitude follows the units. Its phase starts at
  zero in every call, as a real decoder's waveform has no memory between windows: joining blocks
  without SOLA's alignment would put a phase jump at every block edge.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from engine.errors import ModelError
from filters.voice.rvc import RvcConverter, coarse_pitch
from filters.voice.stream import VoiceStream
from benchmarks.tiny_models import DECODER_RATE, TONE_HZ, make_decoder, make_encoder, make_pitch
from benchmarks.voice_samples import feed_in_chunks

RATE = 16000
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rvc_models")
    make_encoder(folder / "rvc_content_encoder.onnx")
    make_pitch(folder / "rvc_pitch.onnx")
    make_decoder(folder / "rvc_decoder.onnx")
    return folder


def tone(seconds: float, amplitude: float = 0.3, hz: float = TONE_HZ) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def short_rms(x: np.ndarray, ms: int = 10) -> np.ndarray:
    n = len(x) // (RATE // 1000 * ms)
    return np.sqrt(np.mean(x[:n * RATE // 1000 * ms].reshape(n, -1).astype(np.float64) ** 2, axis=1))


# models: found, checked, named when missing


def test_missing_model_is_named_with_the_fix(tmp_path):
    with pytest.raises(ModelError) as err:
        RvcConverter(models_dir=tmp_path)
    message = str(err.value)
    assert "rvc_content_encoder.onnx" in message and str(tmp_path) in message
    assert "ContentVec" in message and "--models-dir" in message  # where to get it, where to put it


def test_missing_decoder_is_named(tmp_path):
    make_encoder(tmp_path / "rvc_content_encoder.onnx")
    with pytest.raises(ModelError, match=r"rvc_decoder.*export"):
        RvcConverter(models_dir=tmp_path)


def test_pitch_model_is_optional_but_a_wrong_one_is_refused(tmp_path):
    make_encoder(tmp_path / "rvc_content_encoder.onnx")
    make_decoder(tmp_path / "rvc_decoder.onnx")
    conv = RvcConverter(models_dir=tmp_path)
    assert conv.pitch_source == "yin"  # our own tracker stands in
    y = conv.convert_whole(tone(1.0))
    assert short_rms(y[RATE // 4:]).min() > 0.1  # YIN found the tone's pitch: the decoder sang
    make_encoder(tmp_path / "rvc_pitch.onnx")  # an encoder where the pitch model should be
    with pytest.raises(ModelError, match="rvc_pitch"):
        RvcConverter(models_dir=tmp_path)


# the streaming contract


def test_runs_end_to_end_and_keeps_length(models_dir):
    conv = RvcConverter(models_dir=models_dir)
    assert conv.pitch_source == "rvc_pitch"
    x = np.concatenate([np.zeros(RATE // 2, np.float32), tone(1.5), np.zeros(RATE // 2, np.float32)])
    y = feed_in_chunks(conv, x, sizes=(1, 7, 160, 320, 441, 1000))
    assert len(y) == len(x)
    assert conv.decoder_rate == DECODER_RATE
    d = conv.delay_samples
    assert not np.any(y[:d])  # the delay line's zeros first
    assert np.sqrt(np.mean(y[RATE + d:2 * RATE + d] ** 2)) > 0.1  # the tone came through as a tone
    # Any chunking gives the whole-file result, delayed.
    whole = RvcConverter(models_dir=models_dir).convert_whole(x)
    np.testing.assert_allclose(y[d:], whole[:len(x) - d], atol=1e-5)


def test_reports_its_delay(models_dir):
    """Tone bursts of varying length: the output's envelope lags the input's by the reported delay,
    within SOLA's +-search/2 and the 10 ms frame grid."""
    rng = np.random.default_rng(1)
    parts = []
    for _ in range(12):
        parts += [tone(rng.uniform(0.15, 0.4)), np.zeros(int(rng.uniform(0.1, 0.3) * RATE), np.float32)]
    x = np.concatenate(parts)
    conv = RvcConverter(models_dir=models_dir)
    y = conv.process(x)
    a = np.log(short_rms(x, 1) + 1e-4)
    b = np.log(short_rms(y, 1) + 1e-4)
    lag_ms = int(np.argmax(np.correlate(b - b.mean(), a - a.mean(), "full")) - (len(a) - 1))
    assert abs(lag_ms - conv.latency_s * 1000) <= 8, (lag_ms, conv.latency_s * 1000)
    assert conv.latency_s == (conv.block - 1 + conv.lookahead + conv.crossfade + conv.search // 2) / RATE


def test_sola_joins_blocks_without_clicks_or_dips(models_dir):
    """A steady tone through a decoder whose phase restarts every window: with SOLA the output is a
    steady sine (no sample-to-sample jump beyond a sine's own slope, no level dip at block edges).
    The same blocks crossfaded without the search show what SOLA prevents."""
    x = tone(3.0)
    amplitude = 0.3
    slope = amplitude * 2 * np.pi * TONE_HZ / RATE  # a sine's largest step between samples

    def steady(conv):
        y = conv.process(x)
        return y[conv.delay_samples + RATE // 2:]

    def envelope(y):  # a sine's amplitude, sample by sample
        return np.abs(signal.hilbert(y))[RATE // 10:-RATE // 10]

    y = steady(RvcConverter(models_dir=models_dir))
    assert np.max(np.abs(np.diff(y))) < 1.3 * slope
    level = envelope(y)
    assert level.min() > 0.9 * np.median(level)

    plain = steady(RvcConverter(models_dir=models_dir, search_ms=0))  # crossfade, no alignment
    plain_level = envelope(plain)
    assert plain_level.min() < 0.7 * np.median(plain_level)
    butted = steady(RvcConverter(models_dir=models_dir, search_ms=0, crossfade_ms=0))  # neither
    assert np.max(np.abs(np.diff(butted))) > 3 * slope


def test_room_noise_is_not_sung(models_dir):
    """-50 dBFS hiss: the stand-in pitch model calls it voiced and the decoder would sing it (as a real
    one can hallucinate on noise); the gate, judging periodicity itself, keeps the output silent."""
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(3 * RATE) * 10 ** (-50 / 20)).astype(np.float32)
    gated = RvcConverter(models_dir=models_dir).process(hiss)
    sung = RvcConverter(models_dir=models_dir, gate=False).process(hiss)
    assert np.sqrt(np.mean(sung ** 2)) > 10 ** (-60 / 20)  # what the gate is for
    assert np.sqrt(np.mean(gated.astype(np.float64) ** 2)) < 10 ** (-90 / 20)


def test_onset_after_silence_keeps_its_start(models_dir):
    """A tone after 1 s of silence: its first 20 ms come out whole (within 3 dB), after the reported
    delay and SOLA's +-5 ms, because the gate opens on the lookahead."""
    x = np.concatenate([np.zeros(RATE, np.float32), tone(0.5)])
    conv = RvcConverter(models_dir=models_dir, search_ms=0)  # no SOLA shift: timing exact
    y = conv.process(np.concatenate([x, np.zeros(conv.delay_samples, np.float32)]))[conv.delay_samples:]
    first = slice(RATE, RATE + RATE // 50)
    ratio_db = 10 * np.log10(np.mean(y[first].astype(np.float64) ** 2) / np.mean(x[first].astype(np.float64) ** 2))
    assert ratio_db > -3, ratio_db


def test_voicestream_wraps_it_at_48k(models_dir):
    conv = RvcConverter(models_dir=models_dir)
    stream = VoiceStream(None, 48000, converter=conv)
    x = np.repeat(tone(1.0), 3)  # any 48 kHz signal will do: only length and timing are checked
    y = feed_in_chunks(stream, x, sizes=(480, 960, 333))
    assert len(y) == len(x)
    assert stream.latency_s > conv.latency_s and stream.latency_s - conv.latency_s < 0.006


def test_pitch_follows_the_persona(models_dir):
    """With a profile the operator's pitch is mapped onto the persona's; without one, transposed."""
    from filters.voice.profile import VoiceProfile

    profile = VoiceProfile(log_f0_mean=math.log(220.0), log_f0_std=0.1, envelope=np.zeros(513, np.float32),
                           aperiodicity=np.zeros(513, np.float32), voiced_seconds=10.0)
    conv = RvcConverter(profile, models_dir=models_dir)
    conv.pitch_map.assume(math.log(TONE_HZ), 0.1, 3000)  # as if warmed up on this operator
    y = conv.convert_whole(tone(1.0))[RATE // 4:]
    hz = np.argmax(np.abs(np.fft.rfft(y * np.hanning(len(y))))) * RATE / len(y)
    assert abs(hz - 220.0) < 5
    up = RvcConverter(models_dir=models_dir, transpose=12).convert_whole(tone(1.0))[RATE // 4:]
    hz = np.argmax(np.abs(np.fft.rfft(up * np.hanning(len(up))))) * RATE / len(up)
    assert abs(hz - 2 * TONE_HZ) < 5


def test_coarse_pitch_bins():
    bins = coarse_pitch(np.array([0.0, 50.0, 100.0, 1100.0, 2000.0]))
    assert bins[0] == 1 and bins[1] == 1 and bins[3] == 255 and bins[4] == 255
    assert 1 < bins[2] < 255
