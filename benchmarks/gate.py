"""The CI performance gate: ratios from one measurement run, each checked against a margin.

Why ratios. CI runs on two shared, noisy cores: an absolute figure ("video p95 under 80 ms") would fail
on a busy day and pass a regression on a quiet one. Every figure here is divided by something measured
or fixed in the same run: the camera's frame interval, the camera's frame count, the length of the audio,
or the passthrough relay measured minutes earlier on the same machine. The margins below are the only
numbers to tune; each says what it guards.

Use: `python -m benchmarks.gate [SUITE.json]` (without a file it measures the passthrough and default
paths itself, about 30 s) or `evercall bench --quick --gate`. Exit 1 and one FAIL line per ratio past its
margin; exit 0 otherwise. `--retries 1` re-measures once before failing, for very noisy machines.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

AUDIO_BLOCK_MS = 10.0  # the engine's audio block (480 samples at 48 kHz)

# name -> {"max"| "min": bound, "what": one line}. Ratios of the "default" path unless the name says otherwise.
MARGINS: dict[str, dict] = {
    # Face filter time per frame (capture -> face output, p50) over the frame interval: above 1 the filter
    # cannot keep up with the camera at all; 0.8 leaves room for the encoder and the event loop.
    "face_frame_budget": {"max": 0.8, "what": "face stage p50 / frame interval"},
    # Frames the far end decoded per frame the camera produced: below 0.85 the persona visibly stutters.
    "output_fps_ratio": {"min": 0.85, "what": "frames received at the far end / frames captured"},
    # Seconds spent converting voice per second of audio, in the live call (wall clock): above 0.5 a
    # busier moment makes the 10 ms blocks late and the voice crackles.
    "voice_rtf": {"max": 0.5, "what": "voice processing time / audio duration in the call"},
    # The WebRTC leg of the passthrough relay (frame handed to the track -> decoded), p50, in frames.
    # With tuned receivers about 0.25-0.45; aiortc's stock jitter buffer alone adds a whole frame (1.2+).
    # p50, not p95: a neighbour's burst moves the tail of a few-second window past a frame, not the median.
    "passthrough_transport_frames": {"max": 0.75, "what": "passthrough WebRTC leg p50 / frame interval"},
    # How much longer the WebRTC leg is with the filters running than without (p95, in frames): the
    # filters must not starve the encoder or the event loop (work in recv(), a blocking call...).
    "transport_growth_frames": {"max": 1.5, "what": "(default - passthrough) WebRTC leg p95 / frame interval"},
    # Video latency beyond the deliberate hold to the audio's delay, over the passthrough's, in frames:
    # the relay's added latency that neither the filters nor A/V sync explain.
    "video_added_over_passthrough_frames": {"max": 1.5,
                                            "what": "(video p50 - audio engine p50), default minus passthrough, "
                                                    "/ frame interval"},
    # Audio waiting in the engine beyond the voice filter's own latency, in 10 ms blocks: the microphone
    # block (1) and the hand-offs to the voice thread and the track, which sends a packet as soon as it is
    # complete (about 1.1 on an idle machine, 2-2.5 when the face filter competes for two cores). Past 4
    # packets are standing in the output ring, which PersonaAudioTrack trims to 40 ms.
    "audio_buffering_blocks": {"max": 4.0, "what": "audio engine delay p50 minus voice filter / 10 ms"},
    # The relay's own audio delay (passthrough: capture -> heard at the far end, p50) in 10 ms blocks:
    # the issue's budget is 30 ms; the design takes about 15-19 (one block, 2.5 ms of Opus lookahead, the
    # loopback leg). Past 3 the budget is spent.
    "passthrough_audio_blocks": {"max": 3.0, "what": "passthrough audio latency p50 / 10 ms"},
    # Far-end lip sync, in frames, within the ITU-R BT.1359 detectability window: audio may lag the picture
    # by up to 125 ms (-3.75 frames) and lead it by up to 45 ms (+1.35 frames). Positive: picture late.
    "av_skew_frames_min": {"min": -3.75, "what": "far-end (video - audio) latency p50 / frame interval"},
    "av_skew_frames_max": {"max": 1.35, "what": "far-end (video - audio) latency p50 / frame interval"},
}
BUSY_MACHINE = 2.0  # LoadProbe contention above this: a failure may be the machine's, say so


@dataclass
class GateResult:
    ratios: dict[str, Optional[float]]
    failed: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    contention: Optional[float] = None

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {"passed": self.passed, "ratios": self.ratios, "failed": self.failed, "lines": self.lines,
                "margins": {k: {b: v for b, v in m.items() if b in ("min", "max")} for k, m in MARGINS.items()},
                "cpu_contention": self.contention}


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


def _minus(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def ratios(latency: dict, candidate: str = "default", baseline: str = "passthrough") -> dict[str, Optional[float]]:
    """The gate's ratios from a latency result ({"paths": ..., "settings": ...}) or a whole suite."""
    latency = latency.get("latency", latency)
    frame = latency["settings"]["frame_interval_ms"]
    c, b = latency["paths"][candidate], latency["paths"][baseline]
    cs, bs = c["stages_ms"], b["stages_ms"]
    skew = _div(c["av_skew_ms"]["far_end_p50"], frame)
    return {
        "face_frame_budget": _div(c["filters_ms"]["face_p50"], frame),
        "output_fps_ratio": c["video"]["fps_ratio"],
        "voice_rtf": c["filters_ms"]["voice_rtf"],
        "passthrough_transport_frames": _div(bs["video_transport"], frame),
        "transport_growth_frames": _div(_minus(cs["video_transport_p95"], bs["video_transport_p95"]), frame),
        "video_added_over_passthrough_frames": _div(
            _minus(_minus(c["video"]["latency_ms"]["p50"], cs["audio_engine"]),
                   _minus(b["video"]["latency_ms"]["p50"], bs["audio_engine"])), frame),
        "audio_buffering_blocks": _div(cs["audio_buffering"], AUDIO_BLOCK_MS),
        "passthrough_audio_blocks": _div(b["audio"]["latency_ms"]["p50"], AUDIO_BLOCK_MS),
        "av_skew_frames_min": skew,
        "av_skew_frames_max": skew,
    }


def evaluate(latency: dict, candidate: str = "default", baseline: str = "passthrough",
             margins: Optional[dict[str, dict]] = None) -> GateResult:
    """Check every ratio against its margin; a ratio that could not be measured fails too."""
    margins = margins or MARGINS
    latency = latency.get("latency", latency)
    missing = [n for n in (candidate, baseline) if n not in latency.get("paths", {})]
    if missing:
        why = latency.get("error") or f"no {' or '.join(missing)} path in the result"
        return GateResult({}, failed=["latency"], lines=[f"FAIL latency: not measured ({why})"])
    values = ratios(latency, candidate, baseline)
    contention = [p.get("cpu_contention") for p in latency["paths"].values() if p.get("cpu_contention")]
    result = GateResult(values, contention=max(contention) if contention else None)
    for name, margin in margins.items():
        value = values.get(name)
        bound = ("max", margin["max"]) if "max" in margin else ("min", margin["min"])
        bad = value is None or (value > bound[1] if bound[0] == "max" else value < bound[1])
        shown = "not measured" if value is None else f"{value:.3f}"
        line = f"{'FAIL' if bad else 'ok  '} {name} = {shown} ({bound[0]} {bound[1]}): {margin['what']}"
        if bad:
            result.failed.append(name)
        result.lines.append(line)
    if result.contention is not None:
        result.lines.append(f"machine: CPU contention {result.contention:.2f} during the measurement (1.0 = idle)")
        if result.failed and result.contention > BUSY_MACHINE:
            result.lines.append(f"note: the machine was busy (contention above {BUSY_MACHINE}); re-run before "
                                "blaming the code")
    return result


def measure_quick() -> dict:
    from benchmarks import latency

    return latency.run(quick=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", help="a suite JSON (from `evercall bench --json`); default: measure now")
    parser.add_argument("--retries", type=int, default=0, help="re-measure this many times before failing "
                                                               "(only when measuring now)")
    args = parser.parse_args(argv)
    if args.suite:
        result = evaluate(json.loads(Path(args.suite).read_text()))
    else:
        result = evaluate(measure_quick())
        for attempt in range(args.retries):
            if result.passed:
                break
            print(f"gate failed ({', '.join(result.failed)}); measuring again ({attempt + 1}/{args.retries})")
            result = evaluate(measure_quick())
    print("\n".join(result.lines))
    print("gate: PASSED" if result.passed else f"gate: FAILED ({', '.join(result.failed)})")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
