"""Voice conversion: sounds like the persona, keeps the stream contract, stays in time, stays quiet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.audio_io import resample
from engine.errors import MediaError, PersonaError
from filters.voice.profile import VoiceProfile, track_pitch
from filters.voice.stream import VoiceStream
from filters.voice.world_stream import WorldVoiceConverter
from benchmarks import voice_samples as vs
from benchmarks.voice_samples import feed_in_chunks

pytestmark = pytest.mark.skipif(not vs.have_espeak(), reason="espeak-ng is not installed (apt install espeak-ng)")

RATE = vs.RATE


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    """Male and female espeak voices, each saying the persona, operator and reference sentences."""
    folder = tmp_path_factory.mktemp("speech")
    texts = {"persona": vs.PERSONA_TEXT, "operator": vs.OPERATOR_TEXT, "reference": vs.REFERENCE_TEXT}
    return {f"{who}_{what}": vs.speak(text, voice, folder, f"{who}_{what}")
            for who, voice in (("male", vs.MALE), ("female", vs.FEMALE)) for what, text in texts.items()}


@pytest.fixture(scope="module")
def female_profile(speech) -> VoiceProfile:
    return VoiceProfile.fit(speech["female_persona"])


@pytest.fixture(scope="module")
def encoder():
    resemblyzer = pytest.importorskip("resemblyzer")
    return resemblyzer.VoiceEncoder("cpu", verbose=False)


def embed(encoder, samples: np.ndarray) -> np.ndarray:
    from resemblyzer import preprocess_wav

    return encoder.embed_utterance(preprocess_wav(samples.astype(np.float32), source_sr=RATE))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def envelope_lag_ms(x: np.ndarray, y: np.ndarray, rate: int) -> int:
    """Lag of y behind x, from their 1 ms log-energy envelopes (robust to the change of voice)."""
    hop = rate // 1000

    def env(s):
        n = len(s) // hop
        e = np.log(np.sqrt(np.mean(s[:n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)) + 1e-4)
        return e - e.mean()

    a, b = env(x), env(y)
    return int(np.argmax(np.correlate(b, a, "full")) - (len(a) - 1))


class DelayLine:
    """A passthrough 'converter' with a known delay: lets the resampling timing be measured exactly."""

    def __init__(self, delay: int) -> None:
        self.delay_samples = delay
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(self.delay_samples, dtype=np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self._buf, x])
        self._buf = joined[len(x):]
        return joined[:len(x)]


# profile


def test_profile_learns_each_voices_pitch(speech, female_profile):
    male = VoiceProfile.fit(speech["male_persona"])
    assert 170 < math.exp(female_profile.log_f0_mean) < 260
    assert 80 < math.exp(male.log_f0_mean) < 140
    assert female_profile.voiced_seconds > 5


def test_profile_round_trips_through_bytes(female_profile):
    data = female_profile.to_bytes()
    back = VoiceProfile.from_bytes(data)
    assert isinstance(data, bytes)
    assert back.log_f0_mean == female_profile.log_f0_mean and back.log_f0_std == female_profile.log_f0_std
    np.testing.assert_array_equal(back.envelope, female_profile.envelope)
    np.testing.assert_array_equal(back.aperiodicity, female_profile.aperiodicity)
    assert back.voiced_seconds == female_profile.voiced_seconds
    assert back.band_top_hz == female_profile.band_top_hz > 6000  # a full-band recording
    np.testing.assert_array_equal(back.frames, female_profile.frames)
    # A few thousand frames at most, compact enough to store with the persona.
    assert 500 < len(back.frames) <= 3000 and len(data) < 300_000


def test_profile_from_an_older_build_asks_to_learn_it_again(female_profile):
    import io

    old = io.BytesIO()  # what version 1 wrote: averages only, no persona frames
    np.savez(old, version=np.int32(1), rate=np.int32(RATE), log_f0=np.array([5.3, 0.1]),
             envelope=female_profile.envelope, aperiodicity=female_profile.aperiodicity,
             voiced_seconds=np.float64(9.0))
    with pytest.raises(PersonaError, match="version 1 .* learn it again"):
        VoiceProfile.from_bytes(old.getvalue())


def test_profile_refuses_damaged_bytes_and_silent_samples(female_profile):
    with pytest.raises(PersonaError, match="learn it again"):
        VoiceProfile.from_bytes(female_profile.to_bytes()[:-40])
    with pytest.raises(PersonaError, match="silent"):
        VoiceProfile.fit(np.zeros(5 * RATE, dtype=np.float32))


def test_profile_from_other_rate_matches(speech, female_profile):
    at_48k = VoiceProfile.fit(resample(speech["female_persona"], RATE, 48000), rate=48000)
    assert abs(at_48k.log_f0_mean - female_profile.log_f0_mean) < 0.03


# conversion quality


def test_male_operator_sounds_like_female_persona(speech, female_profile, encoder):
    """Similarity to the persona (judged on sentences the profile never saw) rises by a clear margin,
    and the result is nearer the persona than the operator's own voice."""
    operator = speech["male_operator"]
    converted = WorldVoiceConverter(female_profile).convert_whole(operator)
    persona_ref = embed(encoder, speech["female_reference"])
    operator_ref = embed(encoder, speech["male_reference"])
    before = cosine(embed(encoder, operator), persona_ref)
    after = cosine(embed(encoder, converted), persona_ref)
    # Measured: 0.66 -> 0.92 (cold start, no warm-up; 0.89 without persona frame matching).
    assert after >= before + 0.15, (before, after)
    assert after > cosine(embed(encoder, converted), operator_ref) + 0.1


@pytest.fixture(scope="module")
def other_male(tmp_path_factory) -> dict[str, np.ndarray]:
    """A second male voice saying the persona and reference sentences (the same-gender persona)."""
    folder = tmp_path_factory.mktemp("other_male")
    return {what: vs.speak(text, vs.OTHER_MALE, folder, what)
            for what, text in (("persona", vs.PERSONA_TEXT), ("reference", vs.REFERENCE_TEXT))}


def test_persona_frames_bring_a_same_gender_voice_closer(speech, other_male, encoder):
    """Man to another man: the converted voice is clearly nearer the persona, and matching persona frames
    (now only their fine envelope shape, so no phone is replaced) costs nothing. Measured (cosine to the
    persona): 0.84 before, 0.91 averages only, 0.91 with frame matching; replacing whole frames had
    reached 0.94 on these espeak voices but cost words on real speakers, where the fine-shape matching
    closes more of the gap than averages alone in 5 of 6 pairs (benchmarks/bench_voice.py --real)."""
    profile = VoiceProfile.fit(other_male["persona"])
    operator = speech["male_operator"]
    persona_ref = embed(encoder, other_male["reference"])
    averages_only = cosine(embed(encoder, WorldVoiceConverter(profile, knn=False).convert_whole(operator)),
                           persona_ref)
    matched = cosine(embed(encoder, WorldVoiceConverter(profile).convert_whole(operator)), persona_ref)
    assert matched >= averages_only - 0.01, (averages_only, matched)
    assert matched >= cosine(embed(encoder, operator), persona_ref) + 0.06


def test_profile_from_a_noisy_phone_recording(speech, female_profile, encoder):
    """A voicemail-quality persona sample (room noise, 2 s of it either side, telephone band): the
    missing top end is detected and not learned, so the result stays near what a clean sample gives.
    Measured: 0.87 against 0.92 from the clean sample; learning the empty top end gave 0.76."""
    phone = VoiceProfile.fit(vs.phone_recording(speech["female_persona"]))
    assert 3300 < phone.band_top_hz < 4500
    assert abs(phone.log_f0_mean - female_profile.log_f0_mean) < 0.03
    operator = speech["male_operator"]
    persona_ref = embed(encoder, speech["female_reference"])
    from_phone = cosine(embed(encoder, WorldVoiceConverter(phone).convert_whole(operator)), persona_ref)
    from_clean = cosine(embed(encoder, WorldVoiceConverter(female_profile).convert_whole(operator)), persona_ref)
    assert from_phone > from_clean - 0.08, (from_phone, from_clean)


def test_warm_up_puts_pitch_on_the_persona(speech, female_profile):
    converter = WorldVoiceConverter(female_profile)
    converter.warm_up(speech["male_reference"])
    assert 80 < math.exp(converter.operator.mean) < 140
    out = converter.convert_whole(speech["male_operator"])
    f0 = track_pitch(out, np.arange(0, len(out), 80))
    median = float(np.median(f0[f0 > 0]))
    target = math.exp(female_profile.log_f0_mean)
    assert abs(math.log(median / target)) < math.log(1.12), (median, target)


def test_warm_up_refuses_silence(female_profile):
    with pytest.raises(MediaError):
        WorldVoiceConverter(female_profile).warm_up(np.zeros(3 * RATE, dtype=np.float32))


# stream contract


def test_any_chunking_gives_the_whole_file_result_delayed(speech, female_profile):
    x = speech["male_operator"][: 4 * RATE]
    whole = WorldVoiceConverter(female_profile).convert_whole(x)
    streamed_conv = WorldVoiceConverter(female_profile)
    streamed = feed_in_chunks(streamed_conv, x)
    d = streamed_conv.delay_samples
    assert len(whole) == len(x)
    assert not np.any(streamed[:d])  # zeros first
    tail = streamed_conv.process(np.zeros(d, dtype=np.float32))
    aligned = np.concatenate([streamed, tail])[d:]
    np.testing.assert_allclose(aligned, whole, atol=1e-6)
    assert rms(whole) > 0.02


def test_empty_and_odd_chunks_keep_length(female_profile):
    conv = WorldVoiceConverter(female_profile)
    for n in (0, 1, 319, 321, 0, 4801):
        assert len(conv.process(np.zeros(n, dtype=np.float32))) == n


def test_refuses_interleaved_or_integer_audio(female_profile):
    conv = WorldVoiceConverter(female_profile)
    with pytest.raises(ValueError, match="mono float"):
        conv.process(np.zeros((480, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="int16"):
        VoiceStream(female_profile, 48000).process(np.zeros(480, dtype=np.int16))


def test_latency_is_hop_plus_lookahead_and_within_budget(female_profile):
    conv = WorldVoiceConverter(female_profile)
    assert conv.delay_samples == 320 + 320 - 1
    assert conv.latency_s <= 0.060
    quick = WorldVoiceConverter(female_profile, hop_ms=10, lookahead_ms=20)
    assert quick.delay_samples == 160 + 320 - 1
    with pytest.raises(ValueError):
        WorldVoiceConverter(female_profile, hop_ms=12)


def test_converted_speech_is_in_time_with_the_input(speech, female_profile):
    x = speech["male_operator"][: 6 * RATE]
    conv = WorldVoiceConverter(female_profile)
    y = conv.process(x)
    assert abs(envelope_lag_ms(x, y, RATE) - conv.latency_s * 1000) <= 5


def test_no_clicks_at_hop_edges(speech, female_profile):
    """A seam is a jump between the last sample of one hop and the first of the next: the top 0.5 % of
    curvature would gather there. Measured: 0.9 % of edge samples (chance level, within its spread);
    dropping the response tails at each hop scores 3.7 %."""
    y = WorldVoiceConverter(female_profile).convert_whole(speech["male_operator"]).astype(np.float64)
    curvature = np.abs(np.diff(y, 2))  # entry i is centred on sample i + 1
    at_edges = curvature[((np.arange(1, len(y) - 1) + 1) % 320) <= 1]
    assert np.mean(at_edges > np.percentile(curvature, 99.5)) < 0.02


def test_silence_stays_silent(speech, female_profile):
    conv = WorldVoiceConverter(female_profile)
    assert rms(conv.process(np.zeros(RATE, dtype=np.float32))) < 1e-5
    conv.reset()
    after_speech = conv.process(np.concatenate([speech["male_operator"][: 2 * RATE], np.zeros(RATE, np.float32)]))
    assert rms(after_speech[-RATE // 2:]) < 1e-4  # the voice stops when the operator stops


# the gate: silence in, silence out; onsets whole


def db(x: np.ndarray) -> float:
    return 20 * math.log10(rms(x) + 1e-12)


@pytest.mark.parametrize("kind", ["white", "pink", "hum"])
def test_room_noise_in_gives_silence_out(female_profile, kind):
    """-50 dBFS room noise, streamed from the first sample: the output stays 40 dB below it throughout.
    Measured: digital silence for all three; without the gate the noise comes out at -50 to -55 dBFS."""
    noise = vs.room_noise(kind, 3 * RATE, -50.0)
    out = feed_in_chunks(WorldVoiceConverter(female_profile), noise, sizes=(160, 320, 480))
    assert db(out) < db(noise) - 40, db(out)
    ungated = WorldVoiceConverter(female_profile, gate=False).process(noise)
    assert db(ungated) > db(noise) - 15  # what the gate is for: the vocoder alone re-synthesises noise


def test_pauses_in_a_noisy_room_are_silent_and_speech_is_whole(speech, female_profile):
    """Speech with -50 dBFS fan noise under it and a 1 s pause in the middle: the pause comes out 40 dB
    below the noise, while the speech keeps its level (within 1 dB of converting it without noise)."""
    words = speech["male_operator"][: 3 * RATE]
    clean = np.concatenate([words, np.zeros(RATE, np.float32), words])
    noisy = clean + vs.room_noise("pink", len(clean), -50.0, seed=1)
    out = WorldVoiceConverter(female_profile).convert_whole(noisy)
    reference = WorldVoiceConverter(female_profile, gate=False).convert_whole(clean)
    pause = slice(3 * RATE + RATE // 4, 4 * RATE - RATE // 10)  # after the hangover, before the lookahead
    assert db(out[pause]) < -90, db(out[pause])
    talk = slice(0, 3 * RATE)
    assert abs(db(out[talk]) - db(reference[talk])) < 1.0


@pytest.mark.parametrize("text", ["Happy birthday", "Hello there", "Anna said", "Please sit"])
def test_onset_after_silence_keeps_its_first_20ms(tmp_path_factory, female_profile, text):
    """A word after 1 s of quiet room (-60 dBFS): allowing for the reported delay, the output rises
    within 20 ms of the input and its first 20 ms keep their energy (within 6 dB). Measured: within 2 ms,
    -3 to 0 dB; a gate that waits to confirm speech (no lookahead, no grace) is 30-65 ms late, -12 dB."""
    word = vs.speak(text, vs.MALE, tmp_path_factory.mktemp("onset"), text.replace(" ", "_"))
    x = np.concatenate([np.zeros(RATE, np.float32), word])
    x = x + vs.room_noise("white", len(x), -60.0)
    conv = WorldVoiceConverter(female_profile)
    d = conv.delay_samples
    y = conv.process(np.concatenate([x, np.zeros(d, np.float32)]))[d:]
    ms = RATE // 1000

    def envelope(s):
        n = len(s) // ms
        return 10 * np.log10(np.mean(s[:n * ms].reshape(n, ms).astype(np.float64) ** 2, axis=1) + 1e-20)

    ex, ey = envelope(x), envelope(y)
    level = ex.max() - 30  # the same level on both sides: the converter keeps each frame's power
    onset_in = int(np.argmax(ex > level))
    onset_out = int(np.argmax(ey > level))
    assert onset_out - onset_in <= 20, (onset_in, onset_out)
    first = slice(onset_in * ms, (onset_in + 20) * ms)
    assert db(y[first]) > db(x[first]) - 6, (db(y[first]), db(x[first]))


def test_breath_is_not_turned_into_voice(female_profile):
    """Breath-like noise bursts (300-3000 Hz, 0.5 s) after a quiet room: none comes out with a pitch; a
    quiet one is cut to silence, a loud one (whose start 20 ms of lookahead cannot tell from an /h/)
    comes out at least 6 dB quieter. Measured: -61, -14 and -8 dB; ungated about -0.5 dB."""
    from scipy import signal

    rng = np.random.default_rng(3)
    band = signal.butter(2, [300, 3000], "bandpass", fs=RATE, output="sos")
    for level, attack, wanted in ((-45, 0.05, 30), (-30, 0.15, 6), (-30, 0.05, 6)):
        t = np.arange(RATE // 2) / RATE
        burst = signal.sosfilt(band, rng.standard_normal(len(t))) * np.minimum(1, np.minimum(t / attack,
                                                                                             (0.5 - t) / 0.2))
        burst *= 10 ** (level / 20) / rms(burst)
        x = np.concatenate([np.zeros(RATE), burst, np.zeros(RATE // 2)])
        x = (x + vs.room_noise("white", len(x), -60.0, seed=-level)).astype(np.float32)
        y = WorldVoiceConverter(female_profile).convert_whole(x)
        where = slice(RATE, RATE + len(burst))
        assert db(y[where]) < db(x[where]) - wanted, (level, attack, db(y[where]) - db(x[where]))
        assert not np.any(track_pitch(y, np.arange(0, len(y), 80)) > 0)


# any I/O rate


@pytest.mark.parametrize("rate", [48000, 44100])
def test_voicestream_reports_its_measured_delay(rate):
    """An impulse through resampling + a known delay line comes out exactly where latency_s says."""
    stream = VoiceStream(None, rate, converter=DelayLine(639))
    x = np.zeros(rate, dtype=np.float32)
    start = rate // 4 + 17
    x[start] = 1.0
    y = feed_in_chunks(stream, x, sizes=(1, 160, 441, 480, 960, 1000))
    k = int(np.argmax(y))
    left, mid, right = y[k - 1], y[k], y[k + 1]
    peak = k + 0.5 * (left - right) / (left - 2 * mid + right)
    measured_s = (peak - start) / rate
    assert abs(measured_s - stream.latency_s) < 0.001
    assert stream.latency_s - 639 / RATE < 0.006  # resampling adds only a few ms


def test_voicestream_48k_converts_with_same_length(speech, female_profile):
    x = resample(speech["male_operator"][: 4 * RATE], RATE, 48000)
    stream = VoiceStream(female_profile, 48000)
    y = feed_in_chunks(stream, x, sizes=(480, 960, 1000, 333))
    assert len(y) == len(x)
    assert rms(y) > 0.02
    assert abs(envelope_lag_ms(x, y, 48000) - stream.latency_s * 1000) <= 5
    assert stream.latency_s <= 0.050


def test_voicestream_at_16k_is_the_converter(speech, female_profile):
    x = speech["male_operator"][: 2 * RATE]
    stream = VoiceStream(female_profile, RATE)
    assert stream.latency_s == WorldVoiceConverter(female_profile).latency_s
    np.testing.assert_allclose(stream.process(x), WorldVoiceConverter(female_profile).process(x), atol=1e-7)


# real speakers (festival voices of real people; pocketsphinx hears the words)


@pytest.fixture(scope="module")
def real_speech(tmp_path_factory) -> dict:
    """kal (a man) reading held-out sentences; slt (a woman) reading her persona and reference sets."""
    from benchmarks import real_voices as rv

    if not rv.have_festival():
        pytest.skip(f"festival is not installed (apt install {rv.APT_PACKAGES})")
    pytest.importorskip("pocketsphinx")
    folder = tmp_path_factory.mktemp("festival")
    return {"operator": rv.read(rv.TEST[:3], "kal", folder), "persona": rv.read(rv.ENROL, "slt", folder),
            "reference": rv.read(rv.REFERENCE[:3], "slt", folder)}


def test_real_man_to_real_woman_keeps_the_words(real_speech, encoder):
    """A real man's held-out sentences through the 48 kHz call stream toward a real woman's persona: the
    voice moves toward hers and the recogniser still hears what he said (the issue's ceiling for any pair:
    at most 0.20 more word errors than in his own voice). Measured: cosine to her 0.57 -> 0.66 (0.21 of
    the gap). The converter that replaced whole frames with the persona's added 0.63 in the benchmark's
    kal -> slt pair; `python -m benchmarks.bench_voice --real` has every pair."""
    from benchmarks import real_voices as rv
    from filters.voice.offline import convert_offline

    said = real_speech["operator"]
    profile = VoiceProfile.fit(real_speech["persona"].samples)
    stream = VoiceStream(profile, 48000)
    y48 = convert_offline(stream.process, int(round(stream.delay_samples)), resample(said.samples, RATE, 48000))
    converted = resample(y48, 48000, RATE)[:len(said.samples)]
    persona_ref = embed(encoder, real_speech["reference"].samples)
    before = cosine(embed(encoder, said.samples), persona_ref)
    after = cosine(embed(encoder, converted), persona_ref)
    added = rv.word_error_rate(said, converted) - rv.word_error_rate(said)
    gap_closed = (after - before) / (1 - before)
    assert gap_closed > 0.12, (before, after, added)
    assert added <= 0.20, (before, after, added)


def test_a_headset_operators_empty_top_band_is_not_lifted(speech, female_profile):
    """An operator on a telephone-band microphone (nothing above 3.4 kHz) toward a full-band persona: the
    EQ toward her average envelope stops at his band edge, so his empty top band is not lifted by up to
    EQ_LIMIT (20 dB) toward hers. Measured: the top band (4.5-8 kHz) 61 dB below the speech band with the
    edge respected, 47 dB when the EQ ran to 8 kHz."""
    from scipy import signal

    operator = vs.phone_recording(speech["male_operator"])
    out = WorldVoiceConverter(female_profile).convert_whole(operator)
    f, p = signal.welch(out, RATE, nperseg=1024)
    top_below_speech_db = 10 * np.log10(p[(f > 300) & (f < 3000)].mean() / p[f > 4500].mean())
    assert top_below_speech_db > 55, top_below_speech_db
