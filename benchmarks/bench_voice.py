"""Voice conversion benchmark: latency, speed on one core, how much the result sounds like the persona
(cross- and same-gender, persona frame matching on and off), and what the gate does to room noise,
breath and word onsets.

Run: `python -m benchmarks.bench_voice [out.json]`. Needs espeak-ng (test speech) and resemblyzer (judge).
Similarity is resemblyzer's cosine to the target speaker, judged on sentences the profile never saw.

The yardstick is the real-speaker section (`python -m benchmarks.bench_voice --real`, festival voices of
real people, see `benchmarks/real_voices.py`): every ordered pair of speakers, each persona learned from
its own 20-30 s, the operator reading other sentences through the 48 kHz stream a call uses; per pair the
share of the speaker-similarity gap closed and the word error rate added (pocketsphinx), from a cold start
and with the operator's statistics fitted first from their own enrolment sentences. It writes
`benchmarks/results/voice_real.json` and `voice_real.png`. espeak voices are formant synthesis, not
people: their rows below are kept for the gate, onset and timing figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: effective when this module is run directly

import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyworld  # noqa: E402
import soxr  # noqa: E402

from engine.audio_io import resample  # noqa: E402
from filters.voice.profile import FFT_SIZE, RATE, VoiceProfile, measure  # noqa: E402
from filters.voice.stream import VoiceStream  # noqa: E402
from filters.voice.world_stream import (  # noqa: E402
    EQ_LIMIT,
    EQ_SMOOTH_BINS,
    WorldVoiceConverter,
    estimate_warp,
    smooth_bins,
    warp_envelope,
)
from benchmarks import voice_samples as vs  # noqa: E402


@contextlib.contextmanager
def one_core():
    """Pin this process (and BLAS pools) to one core, so the real-time factor means one core."""
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if before:
        os.sched_setaffinity(0, {max(before)})
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1)
    except ImportError:
        limits = contextlib.nullcontext()
    with limits:
        try:
            yield
        finally:
            if before:
                os.sched_setaffinity(0, before)


VOICES = {"male": vs.MALE, "female": vs.FEMALE, "male2": vs.OTHER_MALE, "female2": "en+f4", "male_us": "en-us+m2"}
# (operator, persona): the two cross-gender directions, then same-gender pairs, where averages alone do little.
PAIRS = (("male", "female"), ("female", "male"), ("male", "male2"), ("female", "female2"), ("male", "male_us"))
ONSET_WORDS = ("Happy birthday", "Hello there", "Anna said", "Please sit", "Sunday morning", "Tell me")


def _speech(folder: Path) -> dict[str, np.ndarray]:
    texts = {"persona": vs.PERSONA_TEXT, "operator": vs.OPERATOR_TEXT, "reference": vs.REFERENCE_TEXT}
    return {f"{who}_{what}": vs.speak(text, voice, folder, f"{who}_{what}")
            for who, voice in VOICES.items() for what, text in texts.items()}


def _db(x: np.ndarray) -> float:
    return round(10 * float(np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)), 1)


def _gate_figures(profile: VoiceProfile, speech: dict[str, np.ndarray]) -> dict:
    """Room noise in, what comes out (dBFS), gate on and off; a pause inside noisy speech; breath."""
    from scipy import signal

    out: dict = {"room_noise_in_dbfs": -50.0}
    for kind in ("white", "pink", "hum"):
        noise = vs.room_noise(kind, 3 * RATE, -50.0)
        out[f"{kind}_noise_out_dbfs"] = {
            "gate_on": _db(WorldVoiceConverter(profile).process(noise)),
            "gate_off": _db(WorldVoiceConverter(profile, gate=False).process(noise))}
    words = speech["male_operator"][: 3 * RATE]
    clean = np.concatenate([words, np.zeros(RATE, np.float32), words])
    noisy = clean + vs.room_noise("pink", len(clean), -50.0, seed=1)
    pause = slice(3 * RATE + RATE // 4, 4 * RATE - RATE // 10)
    out["pause_in_noisy_speech_dbfs"] = {"in": _db(noisy[pause])}
    for name, gate in (("gate_on", True), ("gate_off", False)):
        converted = WorldVoiceConverter(profile, gate=gate).convert_whole(noisy)
        out["pause_in_noisy_speech_dbfs"][name] = _db(converted[pause])
    rng = np.random.default_rng(3)
    band = signal.butter(2, [300, 3000], "bandpass", fs=RATE, output="sos")
    breaths = {}
    for level, attack in ((-45, 0.05), (-30, 0.15), (-30, 0.05)):
        t = np.arange(RATE // 2) / RATE
        shape = np.minimum(1, np.minimum(t / attack, (0.5 - t) / 0.2))
        burst = signal.sosfilt(band, rng.standard_normal(len(t))) * shape
        burst *= 10 ** (level / 20) / np.sqrt(np.mean(burst ** 2))
        x = np.concatenate([np.zeros(RATE), burst, np.zeros(RATE // 2)])
        x = (x + vs.room_noise("white", len(x), -60.0, seed=-level)).astype(np.float32)
        where = slice(RATE, RATE + len(burst))
        breaths[f"{level}dBFS_attack_{int(attack * 1000)}ms"] = {
            name: round(_db(WorldVoiceConverter(profile, gate=gate).convert_whole(x)[where]) - _db(x[where]), 1)
            for name, gate in (("gate_on", True), ("gate_off", False))}
    out["breath_out_minus_in_db"] = breaths
    return out


def _onset_figures(profile: VoiceProfile, folder: Path) -> dict:
    """Words after 1 s of quiet room: how late the output rises (ms, after the reported delay) and the
    energy of its first 20 ms against the input's (dB)."""
    ms = RATE // 1000

    def envelope(s: np.ndarray) -> np.ndarray:
        n = len(s) // ms
        return 10 * np.log10(np.mean(s[:n * ms].reshape(n, ms).astype(np.float64) ** 2, axis=1) + 1e-20)

    figures = {}
    for text in ONSET_WORDS:
        word = vs.speak(text, vs.MALE, folder, "onset_" + text.replace(" ", "_"))
        x = np.concatenate([np.zeros(RATE, np.float32), word])
        x = x + vs.room_noise("white", len(x), -60.0)
        row = {}
        for name, gate in (("gate_on", True), ("gate_off", False)):
            conv = WorldVoiceConverter(profile, gate=gate)
            d = conv.delay_samples
            y = conv.process(np.concatenate([x, np.zeros(d, np.float32)]))[d:]
            ex, ey = envelope(x), envelope(y)
            level = ex.max() - 30
            onset = int(np.argmax(ex > level))
            first = slice(onset * ms, (onset + 20) * ms)
            row[name] = {"late_ms": int(np.argmax(ey > level)) - onset,
                         "first_20ms_db": round(_db(y[first]) - _db(x[first]), 1)}
        figures[text] = row
    return figures


def _rvc_pipeline_overhead(x: np.ndarray) -> dict:
    """The RVC backend's own work (SOLA, resampling, YIN fallback, ONNX calls) on tiny stand-in models:
    what the pipeline costs around real networks, whose time depends on the GPU."""
    from filters.voice.rvc import RvcConverter
    from benchmarks import tiny_models as tiny

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny.make_encoder(folder / "rvc_content_encoder.onnx")
        tiny.make_decoder(folder / "rvc_decoder.onnx")
        conv = RvcConverter(models_dir=folder, providers=["CPUExecutionProvider"])
        times = _chunk_times(conv, x, 320)
        return {"latency_ms_default": round(conv.latency_s * 1000, 2),
                "rtf_one_core_tiny_models_yin_pitch": round(float(times.sum()) / (len(x) / RATE), 3),
                "block_ms": conv.block * 1000 // RATE}


def _chunk_times(stream, x: np.ndarray, chunk: int) -> np.ndarray:
    times = []
    for i in range(0, len(x) - chunk + 1, chunk):
        start = time.perf_counter()
        stream.process(x[i:i + chunk])
        times.append(time.perf_counter() - start)
    return np.array(times)


def _offline_reference(profile: VoiceProfile, x: np.ndarray) -> np.ndarray:
    """Whole-file WORLD (DIO, pyworld.synthesize) with the same mapping: what streaming is measured against."""
    x64 = x.astype(np.float64)
    f0, t = pyworld.dio(x64, RATE)
    f0 = pyworld.stonemask(x64, f0, t, RATE)
    sp = pyworld.cheaptrick(x64, f0, t, RATE, fft_size=FFT_SIZE)
    ap = pyworld.d4c(x64, f0, t, RATE, fft_size=FFT_SIZE)
    op = measure(x)
    voiced = f0 > 0
    f0[voiced] = np.exp(profile.log_f0_mean
                        + (np.log(f0[voiced]) - op.log_f0_mean) * profile.log_f0_std / op.log_f0_std)
    alpha = estimate_warp(op.envelope, profile.envelope)
    log_sp = warp_envelope(np.log(sp + 1e-16), alpha)
    eq = profile.envelope - warp_envelope(op.envelope.astype(np.float64), alpha)
    log_sp = log_sp + np.clip(smooth_bins(eq, EQ_SMOOTH_BINS), -EQ_LIMIT, EQ_LIMIT)
    log_sp += (np.log(sp.sum(1)) - np.log(np.exp(log_sp).sum(1)))[:, None]
    envelope = np.ascontiguousarray(np.exp(log_sp))
    return pyworld.synthesize(f0, envelope, ap, RATE).astype(np.float32)[:len(x)]


def _soxr_round_trip_lag_ms(quality: str, rate: int = 48000, chunk: int = 480) -> float:
    """Most output soxr.ResampleStream holds back (rate -> 16 kHz -> rate, 10 ms chunks), in ms."""
    lag = 0.0
    for rin, rout, n in ((rate, RATE, chunk), (RATE, rate, chunk * RATE // rate)):
        stream = soxr.ResampleStream(rin, rout, 1, "float32", quality)
        made = 0
        worst = 0.0
        for i in range(200):
            made += len(stream.resample_chunk(np.zeros(n, np.float32)))
            worst = max(worst, (i + 1) * n * rout / rin - made)
        lag += worst / rout
    return 1000 * lag


def run() -> dict:
    """Measure everything; returns a JSON-ready dict."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(x: np.ndarray) -> np.ndarray:
        return encoder.embed_utterance(preprocess_wav(np.asarray(x, np.float32), source_sr=RATE))

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return round(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))), 3)

    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        speech = _speech(Path(tmp))
        profiles = {who: VoiceProfile.fit(speech[f"{who}_persona"]) for who in VOICES}
        result["onset_after_quiet_room"] = _onset_figures(profiles["female"], Path(tmp))

    conv = WorldVoiceConverter(profiles["female"])
    stream48 = VoiceStream(profiles["female"], 48000)
    result["latency_ms"] = {
        "converter_16k": round(conv.latency_s * 1000, 2),
        "voicestream_48k": round(stream48.latency_s * 1000, 2),
        "voicestream_44k1": round(VoiceStream(profiles["female"], 44100).latency_s * 1000, 2),
        "soxr_stream_round_trip_extra_HQ": round(_soxr_round_trip_lag_ms("HQ"), 2),
        "soxr_stream_round_trip_extra_LQ": round(_soxr_round_trip_lag_ms("LQ"), 2),
    }

    operator = speech["male_operator"]
    seconds = len(operator) / RATE
    # The same speech with pauses (1 s after every 3 s) under -50 dBFS room noise: where the gate pays.
    pieces = [operator[i:i + 3 * RATE] for i in range(0, len(operator), 3 * RATE)]
    paused = np.concatenate([np.concatenate([p, np.zeros(RATE, np.float32)]) for p in pieces])
    paused = paused + vs.room_noise("pink", len(paused), -50.0, seed=2)
    with one_core():
        conv.reset()
        t16 = _chunk_times(conv, operator, 320)
        x48 = resample(operator, RATE, 48000)
        t48 = _chunk_times(stream48, x48, 480)
        plain = _chunk_times(WorldVoiceConverter(profiles["female"], gate=False, knn=False), operator, 320)
        no_knn = _chunk_times(WorldVoiceConverter(profiles["female"], knn=False), operator, 320)
        pauses_on = _chunk_times(WorldVoiceConverter(profiles["female"]), paused, 320)
        pauses_off = _chunk_times(WorldVoiceConverter(profiles["female"], gate=False), paused, 320)
        rvc = _rvc_pipeline_overhead(operator)
    rtf = lambda t, n=seconds: round(float(t.sum()) / n, 3)  # noqa: E731
    result["speed_one_core"] = {
        "rtf_converter_16k_20ms_chunks": rtf(t16),
        "rtf_voicestream_48k_10ms_chunks": rtf(t48),
        "rtf_converter_16k_without_gate_and_frame_matching": rtf(plain),
        "rtf_converter_16k_without_frame_matching": rtf(no_knn),
        "rtf_16k_speech_with_pauses_in_room_noise": {"gate_on": rtf(pauses_on, len(paused) / RATE),
                                                      "gate_off": rtf(pauses_off, len(paused) / RATE)},
        "chunk_ms_16k_20ms": {"p50": round(1000 * float(np.median(t16)), 2),
                              "p99": round(1000 * float(np.percentile(t16, 99)), 2),
                              "max": round(1000 * float(t16.max()), 2)},
        "chunk_ms_48k_10ms": {"p50": round(1000 * float(np.median(t48)), 2),
                              "p99": round(1000 * float(np.percentile(t48, 99)), 2),
                              "max": round(1000 * float(t48.max()), 2)},
    }
    result["rvc_backend"] = rvc

    similarity = {}
    for source, target in PAIRS:
        x = speech[f"{source}_operator"]
        ref = embed(speech[f"{target}_reference"])
        cold = WorldVoiceConverter(profiles[target])
        converted = cold.convert_whole(x)
        averages = WorldVoiceConverter(profiles[target], knn=False).convert_whole(x)
        warm = WorldVoiceConverter(profiles[target])
        warm.warm_up(speech[f"{source}_reference"])
        first = slice(0, 3 * RATE)
        row = {
            "before": cos(embed(x), ref),
            "after_streaming_cold_start": cos(embed(converted), ref),
            "after_without_frame_matching": cos(embed(averages), ref),
            "after_streaming_with_warm_up": cos(embed(warm.convert_whole(x)), ref),
            "first_3s_cold": {"frame_matching": cos(embed(converted[first]), ref),
                              "without": cos(embed(averages[first]), ref)},
            "warp_factor": round(cold.warp, 3),
        }
        if (source, target) in (("male", "female"), ("female", "male")):
            streamed_conv = WorldVoiceConverter(profiles[target])
            rng = np.random.default_rng(0)
            parts, i = [], 0
            while i < len(x):
                n = int(rng.choice([160, 320, 480, 1000]))
                parts.append(streamed_conv.process(x[i:i + n]))
                i += n
            parts.append(streamed_conv.process(np.zeros(streamed_conv.delay_samples, np.float32)))
            streamed = np.concatenate(parts)[streamed_conv.delay_samples:][:len(x)]
            row["offline_whole_file_world_reference"] = cos(embed(_offline_reference(profiles[target], x)), ref)
            row["streamed_random_chunks_vs_whole_file"] = cos(embed(streamed), embed(converted))
            row["streamed_vs_whole_file_max_abs_diff"] = float(np.max(np.abs(streamed - converted)))
        similarity[f"{source}_to_{target}"] = row
    result["similarity_to_persona"] = similarity

    # A voicemail-quality persona sample (room noise, telephone band): what the profile makes of it.
    phone = VoiceProfile.fit(vs.phone_recording(speech["female_persona"]))
    x, ref = speech["male_operator"], embed(speech["female_reference"])
    result["persona_from_phone_recording"] = {
        "band_top_hz_detected": round(phone.band_top_hz),
        "male_to_female": {"frame_matching": cos(embed(WorldVoiceConverter(phone).convert_whole(x)), ref),
                           "without": cos(embed(WorldVoiceConverter(phone, knn=False).convert_whole(x)), ref),
                           "clean_sample_for_comparison": similarity["male_to_female"]["after_streaming_cold_start"]},
    }
    result["gate"] = _gate_figures(profiles["female"], speech)
    result["judge"] = ("resemblyzer cosine to the persona's reference sentences; same espeak voice about 0.97, "
                       "male vs female about 0.66, en+m3 vs en+m7 about 0.84")
    return result


def _convert_48k(profile: VoiceProfile, x16: np.ndarray, warm_up: np.ndarray | None = None) -> np.ndarray:
    """What a call sends: 16 kHz speech up to 48 kHz, through the call's VoiceStream in 10 ms chunks,
    its constant delay removed, back at 16 kHz for the judges. `warm_up`: the operator's own speech
    (other sentences) the converter's operator statistics start from, as an operator enrollment would
    give; without it the call starts cold, from a generic prior."""
    from filters.voice.offline import convert_offline

    stream = VoiceStream(profile, 48000)
    if warm_up is not None:
        stream.converter.warm_up(warm_up)
    delay = int(round(stream.delay_samples))
    x48 = resample(x16, RATE, 48000)

    def in_10ms_chunks(x: np.ndarray) -> np.ndarray:
        return np.concatenate([stream.process(x[i:i + 480]) for i in range(0, len(x), 480)] or [np.zeros(0)])

    return resample(convert_offline(in_10ms_chunks, delay, x48), 48000, RATE)[:len(x16)]


def _median(values) -> float:
    return round(float(np.median(list(values))), 3)


def real_speakers(folder: Path, split: str = "TEST") -> dict:
    """Every ordered pair of festival's real speakers: gap closed and word error rate added, per pair and
    overall, plus speed at 48 kHz on one core on their speech. `split` is TEST (reported) or DEV (tuning)."""
    from benchmarks import real_voices as rv

    if not rv.have_festival():
        raise SystemExit(f"the real-speaker benchmark needs festival: apt-get install {rv.APT_PACKAGES}")
    judge = rv.Likeness()
    readings = {s: {part: rv.read(getattr(rv, part), s, folder) for part in ("ENROL", split, "REFERENCE")}
                for s in rv.VOICES}
    profiles = {s: VoiceProfile.fit(r["ENROL"].samples) for s, r in readings.items()}
    persona_ref = {s: judge.embed(r["REFERENCE"].samples) for s, r in readings.items()}
    own_wer = {s: rv.word_error_rate(r[split]) for s, r in readings.items()}
    own_voice = {s: judge.embed(r[split].samples) for s, r in readings.items()}  # each operator's, once
    pairs = {}
    for operator, persona in ((o, p) for o in rv.VOICES for p in rv.VOICES if o != p):
        said = readings[operator][split]
        converted = _convert_48k(profiles[persona], said.samples)
        before = judge.cosine(own_voice[operator], persona_ref[persona])
        after = judge.cosine(judge.embed(converted), persona_ref[persona])
        wer = rv.word_error_rate(said, converted)
        # The same, with the operator's statistics fitted first from their own eight enrolment sentences.
        warm = _convert_48k(profiles[persona], said.samples, warm_up=readings[operator]["ENROL"].samples)
        after_warm = judge.cosine(judge.embed(warm), persona_ref[persona])
        wer_warm = rv.word_error_rate(said, warm)
        pairs[f"{operator}_to_{persona}"] = {
            "similarity_before": round(before, 3), "similarity_after": round(after, 3),
            "gap_closed": round(judge.gap_closed(before, after), 3),
            "wer_operator": round(own_wer[operator], 3), "wer_converted": round(wer, 3),
            "wer_added": round(wer - own_wer[operator], 3),
            "operator_warm_up": {"similarity_after": round(after_warm, 3),
                                 "gap_closed": round(judge.gap_closed(before, after_warm), 3),
                                 "wer_added": round(wer_warm - own_wer[operator], 3)}}
    speech = np.concatenate([readings[s][split].samples for s in rv.VOICES])
    stream = VoiceStream(profiles["slt"], 48000)
    x48 = resample(speech, RATE, 48000)
    with one_core():
        cpu = time.process_time()
        times = _chunk_times(stream, x48, 480)
        cpu = time.process_time() - cpu
    seconds = len(speech) / RATE
    return {
        "speakers": {s: rv.VOICES[s] for s in rv.VOICES},
        "sentences": {"persona_learned_from": len(rv.ENROL), "operator_reads": split,
                      "persona_judged_on": len(rv.REFERENCE)},
        "persona_sample_seconds": {s: round(len(r["ENROL"].samples) / RATE, 1) for s, r in readings.items()},
        "pairs": pairs,
        "overall": {"median_gap_closed": _median(r["gap_closed"] for r in pairs.values()),
                    "median_wer_added": _median(r["wer_added"] for r in pairs.values()),
                    "max_wer_added": round(max(r["wer_added"] for r in pairs.values()), 3),
                    "with_operator_warm_up": {
                        "median_gap_closed": _median(r["operator_warm_up"]["gap_closed"] for r in pairs.values()),
                        "median_wer_added": _median(r["operator_warm_up"]["wer_added"] for r in pairs.values()),
                        "max_wer_added": round(max(r["operator_warm_up"]["wer_added"] for r in pairs.values()), 3)},
                    "latency_ms_48k": round(stream.latency_s * 1000, 2),
                    # CPU time is what the converter costs; wall time also counts waiting for a shared core.
                    "rtf_48k_10ms_chunks_one_core_cpu_time": round(cpu / seconds, 3),
                    "rtf_48k_10ms_chunks_one_core_wall_time": round(float(times.sum()) / seconds, 3),
                    "load_average_1min": round(os.getloadavg()[0], 1)},
        "definitions": {"gap_closed": "(cos(converted, persona) - cos(operator, persona)) / "
                                      "(1 - cos(operator, persona)), resemblyzer, persona's held-out sentences",
                        "wer_added": "pocketsphinx word error rate of the converted speech minus the operator's "
                                     "own, against the text read, each sentence decoded alone",
                        "operator_warm_up": "the converter's operator statistics fitted first from the operator's "
                                            "own enrolment sentences (what an operator enrollment would give)"},
    }


def plot_real(result: dict, out: Path) -> Path:
    """Two bars per pair: share of the similarity gap closed and word error rate added, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = result["pairs"]
    names = [n.replace("_to_", " → ") for n in pairs]
    pos = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, target, title, worse in (
            (axes[0], "gap_closed", 0.6, "Similarity gap closed (higher is better)", "below"),
            (axes[1], "wer_added", 0.10, "Word error rate added (lower is better)", "above")):
        values = [pairs[n][key] for n in pairs]
        ax.bar(pos, values, color="#DD8452" if key == "wer_added" else "#4C72B0")
        ax.axhline(target, color="#333333", linestyle="--", linewidth=1.2, label=f"target {target:g}")
        if key == "wer_added":
            ax.axhline(0.2, color="#C44E52", linestyle=":", linewidth=1.2, label="no pair above 0.2")
        for x, v in zip(pos, values):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=10)
        ax.set_xticks(pos, names, rotation=20)
        ax.set_title(title)
        ax.legend(frameon=False, fontsize=10)
    o = result["overall"]
    fig.suptitle(f"Voice conversion on real speakers (festival voices), 48 kHz stream: median gap closed "
                 f"{o['median_gap_closed']:.2f}, median WER added {o['median_wer_added']:.2f}", fontsize=12)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def run_real(folder: Path | None = None) -> dict:
    """The real-speaker section, with its JSON and plot written under benchmarks/results/."""
    results = Path(__file__).parent / "results"
    folder = folder or Path(tempfile.gettempdir()) / "evercall_real_voices"
    result = real_speakers(folder)
    (results / "voice_real.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_real(result, results / "voice_real.png")
    return result


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = run_real() if "--real" in sys.argv else {**run(), "real_speakers": run_real()}
    text = json.dumps(out, indent=2)
    print(text)
    if args:
        Path(args[0]).write_text(text + "\n")
