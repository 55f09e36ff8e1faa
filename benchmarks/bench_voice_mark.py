"""Voice provenance mark benchmark: found share per transform, false finds, cost, loudness, words kept.

Run `python -m benchmarks.bench_voice_mark` (a few minutes on two cores) for a JSON report, also written
to benchmarks/results/voice_mark.json:
- share of 3 s windows (random starts, so no alignment is given) where the right payload is found after
  each transform of filters/watermark/voice_sim.py: Opus (CELT "lowdelay" as calls send, "audio" as
  ffmpeg's default, "voip" as SILK/hybrid) at 10 and 20 ms frames and 24-64 kbit/s, resampling to 16 kHz,
  MP3 and AAC, +/-3 dB; per speaker and overall;
- false finds in 1000 unmarked 3 s clips: speech of every speaker (clean and through the codecs), white
  and pink noise, tones, chords, sweeps and near-silence; the decision is the CRC-32, whose bound per
  clip is given with the count;
- cost of marking one 10 ms block at 48 kHz, and of checking one 3 s window;
- signal-to-mark ratio over the blocks where someone speaks;
- word error rate of pocketsphinx's own English model on the festival voices, unmarked, marked and with a
  slight extra noise (control), paired per sentence over several room-noise draws, with standard errors.
`--only wer --wer-draws N` runs just that last part (to benchmarks/results/voice_mark_wer.json): each
draw adds about the same decoding time, and the standard error falls as one over the root of N.

Speech: Debian festival's voices of real speakers (kal, ked: diphone recordings; slt: a model of a real
speaker) when installed, plus espeak-ng voices; a faint room-noise floor (-60 dBFS) is added before
marking, as a microphone would, so pauses are not digital silence (where the mark alone would be heard).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import real_voices as rv
from benchmarks.bench_watermark import round_timings
from benchmarks.voice_samples import FEMALE, MALE, OPERATOR_TEXT, OTHER_MALE, PERSONA_TEXT, REFERENCE_TEXT, \
    have_espeak, speak
from engine.audio_io import resample
from filters.watermark.embed import make_payload
from filters.watermark.voice import (
    DETECT_RATE,
    FLOOR_RMS,
    NOISY_SMR_DB,
    SMR_DB,
    SYNC_TRIES,
    VoiceMarkDetector,
    VoiceMarkEmbedder,
    mark_track,
    signal_to_mark_db,
)
from filters.watermark.voice_sim import TRANSFORM_RATES, TRANSFORMS, mp3, opus

RATE = 48000
PERSONA, CALL = "persona/benchmark", "call/benchmark"
PAYLOAD = make_payload(PERSONA, CALL)
ROOM_NOISE_DBFS = -60.0
SPEECH_RMS = 0.08  # about -22 dBFS, a normal call level
RESULTS = Path(__file__).resolve().parent / "results" / "voice_mark.json"
WER_RESULTS = RESULTS.with_name("voice_mark_wer.json")


def _level(x: np.ndarray, rms: float = SPEECH_RMS) -> np.ndarray:
    active = x[np.abs(x) > 0.05 * np.abs(x).max()]
    return (x * (rms / np.sqrt(np.mean(active**2)))).astype(np.float32)


def speakers(cache: Path) -> dict[str, tuple[np.ndarray, rv.Reading | None]]:
    """name -> (speech at 48 kHz with a room-noise floor, the festival reading when there is one)."""
    out: dict[str, tuple[np.ndarray, rv.Reading | None]] = {}
    rng = np.random.default_rng(3)
    if rv.have_festival():
        for name in rv.VOICES:
            reading = rv.read(rv.ENROL + rv.DEV + rv.TEST + rv.REFERENCE, name, cache)
            out[f"festival_{name}"] = (_level(resample(reading.samples, rv.RATE, RATE)), reading)
    if have_espeak():
        for voice, text in ((MALE, OPERATOR_TEXT), (FEMALE, PERSONA_TEXT), (OTHER_MALE, REFERENCE_TEXT)):
            x = speak(text, voice, cache, f"espeak_{voice.replace('+', '_')}_{len(text)}")
            out[f"espeak_{voice}"] = (_level(resample(x, rv.RATE, RATE)), None)
    noise = 10 ** (ROOM_NOISE_DBFS / 20)
    return {k: ((x + noise * rng.standard_normal(len(x))).astype(np.float32), r) for k, (x, r) in out.items()}


def _windows(x: np.ndarray, rate: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    x16 = resample(x, rate, DETECT_RATE)
    size = 3 * DETECT_RATE
    return [x16[s:s + size] for s in rng.integers(0, len(x16) - size, count)]


def found_shares(voices: dict, windows_per_voice: int, rng: np.random.Generator) -> dict:
    detector = VoiceMarkDetector()
    report: dict = {}
    marked = {name: mark_track(x, PERSONA, CALL, RATE) for name, (x, _) in voices.items()}
    for tname, transform in TRANSFORMS.items():
        per_voice, found, total, wrong = {}, 0, 0, 0
        zs: list[float] = []
        for name, x in marked.items():
            results = [detector.detect(w) for w in
                       _windows(transform(x), TRANSFORM_RATES.get(tname, RATE), windows_per_voice, rng)]
            ok = sum(r.found and r.payload == PAYLOAD for r in results)
            wrong += sum(r.found and r.payload != PAYLOAD for r in results)
            per_voice[name] = round(ok / len(results), 3)
            found, total = found + ok, total + len(results)
            zs += [r.sync_z for r in results]
        report[tname] = {"rate": round(found / total, 4), "found": found, "windows": total,
                         "wrong_payload": wrong, "min_sync_z": round(min(zs), 1), "per_voice": per_voice}
        print(f"{tname:22s} {found / total:.3f}", flush=True)
    return report


def _unmarked_clips(voices: dict, count: int, rng: np.random.Generator):
    """`count` unmarked 3 s clips at 48 kHz: speech (clean, Opus, MP3), noise, tones, chords, sweeps."""
    t = np.arange(3 * RATE) / RATE
    speech = [x for x, _ in voices.values()]
    coded = [opus(x, 24000, 20, "lowdelay") for x in speech] + [mp3(x) for x in speech]
    for i in range(count):
        kind = i % 10
        if kind < 4:
            source = speech[i % len(speech)] if kind < 2 else coded[i % len(coded)]
            start = int(rng.integers(0, len(source) - 3 * RATE))
            yield "speech", source[start:start + 3 * RATE]
        elif kind == 4:
            yield "white_noise", (rng.standard_normal(len(t)) * 10 ** rng.uniform(-3, -1)).astype(np.float32)
        elif kind == 5:
            spec = np.fft.rfft(rng.standard_normal(len(t))) / np.sqrt(np.arange(len(t) // 2 + 1) + 1.0)
            pink = np.fft.irfft(spec, len(t))
            yield "pink_noise", (pink / pink.std() * 10 ** rng.uniform(-3, -1)).astype(np.float32)
        elif kind == 6:
            f = rng.uniform(80, 7000)
            yield "tone", (0.2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))).astype(np.float32)
        elif kind == 7:
            f0 = rng.uniform(80, 400)
            chord = sum(np.sin(2 * np.pi * f0 * h * (1 + 0.003 * np.sin(2 * np.pi * 5 * t)) * t) / h
                        for h in range(1, 12))
            yield "harmonic", (0.05 * chord).astype(np.float32)
        elif kind == 8:
            f0, f1 = rng.uniform(50, 8000, 2)
            phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
            yield "sweep", (0.1 * np.sin(phase)).astype(np.float32)
        else:
            yield "near_silence", (rng.standard_normal(len(t)) * 10 ** (-75 / 20)).astype(np.float32)


def false_finds(voices: dict, count: int, rng: np.random.Generator) -> dict:
    detector = VoiceMarkDetector()
    found, kinds, zs = 0, {}, []
    for kind, clip in _unmarked_clips(voices, count, rng):
        result = detector.detect(resample(clip, RATE, DETECT_RATE))
        found += result.found
        zs.append(result.sync_z)
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"found": found, "clips": count, "clips_by_kind": kinds,
            "decision": f"payload passes the key-salted CRC-32 at one of the {SYNC_TRIES} tallest pilot peaks",
            "false_find_bound_per_clip": SYNC_TRIES * 2.0**-32,
            "expected_false_finds_in_these_clips": count * SYNC_TRIES * 2.0**-32,
            "max_sync_z": round(max(zs), 2), "p99_sync_z": round(float(np.percentile(zs, 99)), 2)}


def cost(speech: np.ndarray, rounds: int = 5, per_round: int = 400) -> dict:
    """ms per 10 ms block; like bench_watermark, also the quietest round's figures (shared machines)."""
    embedder = VoiceMarkEmbedder(PAYLOAD, RATE)
    blocks = speech[: len(speech) // 480 * 480].reshape(-1, 480)
    per_block = round_timings(lambda k: embedder.process(blocks[k % len(blocks)]), rounds, per_round)
    detector = VoiceMarkDetector()
    clip = resample(speech[: 3 * RATE], RATE, DETECT_RATE)
    start = time.perf_counter()
    for _ in range(10):
        detector.detect(clip)
    return {"mark_ms_per_10ms_block": per_block,
            "detect_ms_per_3s_window": round((time.perf_counter() - start) / 10 * 1e3, 1)}


CONDITIONS = ("unmarked", "control_other_noise", "marked")


def _errors(reading: rv.Reading, samples48: np.ndarray) -> np.ndarray:
    """Word errors per sentence of `reading` in `samples48` (48 kHz, time-aligned with the reading); each
    pass has a fresh decoder (rv.sentence_errors), so no condition is heard through another's history."""
    return rv.sentence_errors(reading, resample(samples48, RATE, rv.RATE)[: len(reading.samples)])


def _one_draw(task: tuple[rv.Reading, int]) -> dict[str, np.ndarray]:
    """One room-noise draw of one reading, decoded unmarked, with a second noise (control) and marked."""
    reading, seed = task
    noise = 10 ** (ROOM_NOISE_DBFS / 20)
    clean = _level(resample(reading.samples, rv.RATE, RATE))
    rng = np.random.default_rng(100 + seed)
    x = (clean + noise * rng.standard_normal(len(clean))).astype(np.float32)
    other = x + (noise * rng.standard_normal(len(x))).astype(np.float32)
    return {"unmarked": _errors(reading, x), "control_other_noise": _errors(reading, other),
            "marked": _errors(reading, mark_track(x, PERSONA, CALL, RATE))}


def _wer_summary(readings: dict[str, rv.Reading], draws: list[dict[str, dict[str, np.ndarray]]]) -> dict:
    """The report over the draws done: draws[i][voice][condition] = word errors per sentence."""
    seeds = len(draws)
    n_words = {name: np.array([len(rv.words(t)) for t in r.texts]) for name, r in readings.items()}
    words = int(sum(n.sum() for n in n_words.values()))
    per: dict = {}
    for name in readings:
        total = n_words[name].sum()
        per[name] = {k: round(float(sum(d[name][k].sum() for d in draws)) / (seeds * total), 4) for k in CONDITIONS}
        per[name]["unmarked_per_draw"] = [round(float(d[name]["unmarked"].sum() / total), 4) for d in draws]
    # errors per sentence and draw, in one order for every condition (so they pair)
    flat = {k: np.concatenate([d[name][k] for d in draws for name in readings]) for k in CONDITIONS}
    decoded = words * seeds

    def paired(k: str, base: str = "unmarked") -> dict[str, float]:
        """The difference in WER and its standard error three ways: over sentence-and-draw pairs taken as
        independent (`se`); over whole draws (`se_by_draw`: only the room noise varies, for these
        sentences); over sentences, each summed over its draws (`se_by_sentence`: the sentences taken as a
        sample of speech; it is the largest where some sentences lose a word to the change in every draw)."""
        d = flat[k] - flat[base]
        out = {"diff": round(float(d.sum()) / decoded, 4),
               "se": round(float(np.std(d, ddof=1) * np.sqrt(len(d))) / decoded, 4)}
        if seeds > 1:
            per_draw = d.reshape(seeds, -1).sum(axis=1) / words  # flat is draw-major
            out["se_by_draw"] = round(float(np.std(per_draw, ddof=1) / np.sqrt(seeds)), 4)
            per_sentence = d.reshape(seeds, -1).sum(axis=0)  # flat is draw-major, the same sentences each draw
            out["se_by_sentence"] = round(float(np.std(per_sentence, ddof=1) * np.sqrt(len(per_sentence))) / decoded, 4)
        return out

    marked, control, marked_vs_control = paired("marked"), paired("control_other_noise"), \
        paired("marked", "control_other_noise")
    return {"per_voice": per, "mean": {k: round(float(v.sum()) / decoded, 4) for k, v in flat.items()},
            "noise_draws": seeds, "words_per_draw": words, "words_per_condition": decoded,
            "marked_minus_unmarked": marked["diff"], "marked_minus_unmarked_se": marked["se"],
            "marked_minus_unmarked_se_by_draw": marked.get("se_by_draw"),
            "marked_minus_unmarked_se_by_sentence": marked.get("se_by_sentence"),
            "control_minus_unmarked": control["diff"], "control_minus_unmarked_se": control["se"],
            "control_minus_unmarked_se_by_draw": control.get("se_by_draw"),
            "control_minus_unmarked_se_by_sentence": control.get("se_by_sentence"),
            "marked_minus_control": marked_vs_control["diff"], "marked_minus_control_se": marked_vs_control["se"],
            "marked_minus_unmarked_upper_95": round(marked["diff"] + 1.96 * marked["se"], 4),
            "errors_per_sentence": {name: {k: [d[name][k].astype(int).tolist() for d in draws] for k in CONDITIONS}
                                    for name in readings}}  # [draw][sentence], for any other analysis


def word_error_rates(voices: dict, seeds: int = 3, jobs: int = 1, on_draw=None) -> dict:
    """pocketsphinx on each festival reading (23 sentences), unmarked against marked, paired.

    The recogniser flips words on any small change, so one reading says little: each reading is recorded
    `seeds` times with a different draw of the -60 dBFS room noise (each an equally good unmarked
    recording), and each draw is decoded unmarked, marked, and with a second independent -60 dBFS noise
    added (the control: a change as slight as the mark's). Differences are paired per sentence and draw;
    `*_se` is their standard error, so a difference well inside two of them is no difference.

    `jobs` processes share the draws (the figures do not depend on it); `on_draw(report)` is called with
    the report so far after each whole draw, so a long run can be saved as it goes."""
    readings = {name: reading for name, (_, reading) in voices.items() if reading is not None}
    if not readings:
        return {"skipped": "festival is not installed"}
    names = [name for _ in range(seeds) for name in readings]  # seed-major: whole draws finish in turn
    tasks = [(readings[name], seed) for seed in range(seeds) for name in readings]
    draws: list[dict[str, dict[str, np.ndarray]]] = []
    done: dict[str, dict[str, np.ndarray]] = {}
    pool = None
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(jobs)
    try:
        results = pool.map(_one_draw, tasks) if pool is not None else map(_one_draw, tasks)
        for name, result in zip(names, results):
            done[name] = result
            if len(done) == len(readings):
                draws.append(done)
                done = {}
                if on_draw is not None:
                    on_draw(_wer_summary(readings, draws))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return _wer_summary(readings, draws)


def run(windows_per_voice: int = 20, fp_clips: int = 1000, seed: int = 0, wer_draws: int = 3, jobs: int = 1) -> dict:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    cache = Path(tempfile.gettempdir()) / "evercall-bench-voices"
    voices = speakers(cache)
    if not voices:
        raise SystemExit("needs festival (apt-get install " + rv.APT_PACKAGES + ") or espeak-ng for speech")
    speech = np.concatenate([x for x, _ in voices.values()])
    marked = mark_track(speech, PERSONA, CALL, RATE)
    report: dict = {
        "speakers": {k: round(len(x) / RATE, 1) for k, (x, _) in voices.items()},
        "settings": {"smr_db_tonal": SMR_DB, "smr_db_noise_like": NOISY_SMR_DB,
                     "floor_dbfs": round(20 * np.log10(FLOOR_RMS), 1), "room_noise_dbfs": ROOM_NOISE_DBFS,
                     "speech_rms_dbfs": round(20 * np.log10(SPEECH_RMS), 1)},
        "signal_to_mark_db": round(signal_to_mark_db(speech, marked, RATE), 2),
        "per_speaker_signal_to_mark_db": {k: round(signal_to_mark_db(x, mark_track(x, PERSONA, CALL, RATE), RATE), 2)
                                          for k, (x, _) in voices.items()},
    }
    report.update(cost(speech))
    report["word_error_rate"] = word_error_rates(voices, wer_draws, jobs)
    print(json.dumps(report, indent=1), flush=True)
    report["found_share_3s"] = found_shares(voices, windows_per_voice, rng)
    report["false_finds"] = false_finds(voices, fp_clips, rng)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def run_wer(wer_draws: int, jobs: int = 1, out: Path | None = None) -> dict:
    """Only the word-error part: the one that needs many draws to say "within 0.02" with confidence.
    With `out`, the report so far is written there after every whole draw (a long run stopped early
    still leaves every draw it finished)."""
    started = time.perf_counter()
    voices = speakers(Path(tempfile.gettempdir()) / "evercall-bench-voices")

    def save(wer: dict) -> None:
        report = {"word_error_rate": wer, "draws_asked": wer_draws, "seconds": round(time.perf_counter() - started, 1)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"draw {wer['noise_draws']}: marked-unmarked {wer['marked_minus_unmarked']:+.4f} "
              f"(se {wer['marked_minus_unmarked_se']:.4f}), control {wer['control_minus_unmarked']:+.4f} "
              f"(se {wer['control_minus_unmarked_se']:.4f}), {report['seconds']:.0f} s", flush=True)

    wer = word_error_rates(voices, wer_draws, jobs, save if out is not None else None)
    return {"word_error_rate": wer, "draws_asked": wer_draws, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20, help="3 s windows per speaker and transform")
    parser.add_argument("--fp-clips", type=int, default=1000, help="unmarked 3 s clips to scan")
    parser.add_argument("--wer-draws", type=int, default=3, help="room-noise draws each reading is decoded on")
    parser.add_argument("--only", choices=["wer"], help="run only this part (wer: word error rates, "
                                                       f"written to {WER_RESULTS.name} unless --out)")
    parser.add_argument("--jobs", type=int, default=1, help="processes that share the word-error draws")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.only == "wer":
        args.out = args.out or WER_RESULTS
        report = run_wer(args.wer_draws, args.jobs, args.out)
    else:
        report = run(args.windows, args.fp_clips, wer_draws=args.wer_draws, jobs=args.jobs)
        args.out = args.out or RESULTS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
