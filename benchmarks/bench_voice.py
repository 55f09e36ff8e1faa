"""Voice conversion benchmark: latency, speed on one core, and how much the result sounds like the persona.

Run: `python -m benchmarks.bench_voice [out.json]`. Needs espeak-ng (test speech) and resemblyzer (judge).
Similarity is resemblyzer's cosine to the target speaker, judged on sentences the profile never saw.
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
from tests import voice_samples as vs  # noqa: E402


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


def _speech(folder: Path) -> dict[str, np.ndarray]:
    texts = {"persona": vs.PERSONA_TEXT, "operator": vs.OPERATOR_TEXT, "reference": vs.REFERENCE_TEXT}
    return {f"{who}_{what}": vs.speak(text, voice, folder, f"{who}_{what}")
            for who, voice in (("male", vs.MALE), ("female", vs.FEMALE)) for what, text in texts.items()}


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

    with tempfile.TemporaryDirectory() as tmp:
        speech = _speech(Path(tmp))
    result: dict = {}
    profiles = {who: VoiceProfile.fit(speech[f"{who}_persona"]) for who in ("male", "female")}

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
    with one_core():
        conv.reset()
        t16 = _chunk_times(conv, operator, 320)
        x48 = resample(operator, RATE, 48000)
        t48 = _chunk_times(stream48, x48, 480)
    result["speed_one_core"] = {
        "rtf_converter_16k_20ms_chunks": round(float(t16.sum()) / seconds, 3),
        "rtf_voicestream_48k_10ms_chunks": round(float(t48.sum()) / seconds, 3),
        "chunk_ms_16k_20ms": {"p50": round(1000 * float(np.median(t16)), 2),
                              "p99": round(1000 * float(np.percentile(t16, 99)), 2),
                              "max": round(1000 * float(t16.max()), 2)},
        "chunk_ms_48k_10ms": {"p50": round(1000 * float(np.median(t48)), 2),
                              "p99": round(1000 * float(np.percentile(t48, 99)), 2),
                              "max": round(1000 * float(t48.max()), 2)},
    }

    similarity = {}
    for source, target in (("male", "female"), ("female", "male")):
        x = speech[f"{source}_operator"]
        ref = embed(speech[f"{target}_reference"])
        cold = WorldVoiceConverter(profiles[target])
        converted = cold.convert_whole(x)
        warm = WorldVoiceConverter(profiles[target])
        warm.warm_up(speech[f"{source}_reference"])
        streamed_conv = WorldVoiceConverter(profiles[target])
        rng = np.random.default_rng(0)
        parts, i = [], 0
        while i < len(x):
            n = int(rng.choice([160, 320, 480, 1000]))
            parts.append(streamed_conv.process(x[i:i + n]))
            i += n
        parts.append(streamed_conv.process(np.zeros(streamed_conv.delay_samples, np.float32)))
        streamed = np.concatenate(parts)[streamed_conv.delay_samples:][:len(x)]
        similarity[f"{source}_to_{target}"] = {
            "before": cos(embed(x), ref),
            "after_streaming_cold_start": cos(embed(converted), ref),
            "after_streaming_with_warm_up": cos(embed(warm.convert_whole(x)), ref),
            "offline_whole_file_world_reference": cos(embed(_offline_reference(profiles[target], x)), ref),
            "streamed_random_chunks_vs_whole_file": cos(embed(streamed), embed(converted)),
            "streamed_vs_whole_file_max_abs_diff": float(np.max(np.abs(streamed - converted))),
            "warp_factor": round(cold.warp, 3),
        }
    result["similarity_to_persona"] = similarity
    result["judge"] = "resemblyzer cosine; same espeak voice about 0.97, male vs female about 0.66"
    return result


if __name__ == "__main__":
    out = run()
    text = json.dumps(out, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")
