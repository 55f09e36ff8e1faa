"""The whole benchmark suite in one run: relay latency, face, voice, watermark, A/V skew, and the gate.

`run(quick)` returns one JSON-ready dict; `write(suite, json_path, plots_dir)` saves it and its PNG plots.
Quick mode (CI, `evercall bench --quick`) keeps every section but measures less: about a minute and a half
on two cores. Full mode measures longer and adds three comparison paths (no A/V hold; aiortc's stock
receive buffers; 20 ms Opus packets) and the calls-per-machine scan.

Every figure comes from this one run on this one machine: compare ratios inside a result, and compare
results only between runs on the same kind of machine (the machine block says which).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("benchmarks") / "results"
QUICK = {"latency_s": 6.0, "face_frames": 30, "watermark_s": 3, "watermark_fp_windows": 30, "scaling": 0}
FULL = {"latency_s": 20.0, "face_frames": 120, "watermark_s": 30, "watermark_fp_windows": 1000, "scaling": 4}


def machine_info() -> dict:
    """What the figures were measured on: they mean little without it."""
    info: dict = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout.strip()
            info["gpu"] = out or None
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import aiortc

        info["aiortc"] = aiortc.__version__
    except (ImportError, AttributeError):
        pass
    return info


def _section(report: dict, name: str, fn: Callable[[], object], timings: dict) -> None:
    """Run one section; a failure is recorded in its place and the rest of the suite goes on."""
    start = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as exc:  # a missing optional tool (espeak-ng, resemblyzer) must not sink the suite
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
    timings[name] = round(time.perf_counter() - start, 1)


def av_skew_summary(latency: dict) -> dict:
    """Far-end lip sync per path, in ms and frames, against the ITU-R BT.1359 detectability window."""
    frame = latency["settings"]["frame_interval_ms"]
    out = {}
    for name, p in latency["paths"].items():
        skew = p["av_skew_ms"]["far_end_p50"]
        out[name] = {
            "far_end_skew_ms": skew,  # video latency - audio latency at the far end; positive: picture late
            "engine_skew_ms": p["av_skew_ms"]["engine"],  # where media leaves the pipeline
            "video_p50_ms": p["video"]["latency_ms"]["p50"],
            "audio_p50_ms": p["audio"]["latency_ms"]["p50"],
            "skew_frames": None if skew is None else round(skew / frame, 2),
            "within_detectability": None if skew is None else -125.0 <= skew <= 45.0,
        }
    return out


def run(quick: bool = True, scaling: Optional[int] = None, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Measure every section; returns the suite as a JSON-ready dict (see the module docstring)."""
    knobs = dict(QUICK if quick else FULL)
    if scaling is not None:
        knobs["scaling"] = scaling
    started = time.perf_counter()
    report: dict = {
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "settings": knobs,
        "machine": machine_info(),
    }
    timings: dict[str, float] = {}

    from benchmarks import latency

    progress(f"latency: relay paths, {knobs['latency_s']:.0f} s each")
    _section(report, "latency", lambda: latency.run(quick=quick, seconds=knobs["latency_s"]), timings)
    progress("face filter")

    def face() -> dict:
        from benchmarks import bench_face

        return bench_face.run(knobs["face_frames"])
    _section(report, "face", face, timings)
    progress("voice filter")

    def voice() -> dict:
        from benchmarks import bench_voice

        return bench_voice.run()
    _section(report, "voice", voice, timings)

    if (ROOT / "benchmarks" / "bench_watermark.py").is_file():
        progress("watermark")

        def watermark() -> dict:
            from benchmarks import bench_watermark

            return bench_watermark.run(seconds=knobs["watermark_s"], fp_windows=knobs["watermark_fp_windows"])
        _section(report, "watermark", watermark, timings)

    if "paths" in report.get("latency", {}):
        report["av_skew"] = av_skew_summary(report["latency"])
        from benchmarks import gate

        report["gate"] = gate.evaluate(report["latency"]).to_dict()
    if knobs["scaling"]:
        progress(f"calls per machine: 1..{knobs['scaling']} at once")
        _section(report, "scaling", lambda: latency.scaling(knobs["scaling"], "default")
                 + latency.scaling(knobs["scaling"] + 2, "passthrough"), timings)
    report["machine"]["load_average_1m_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    report["section_seconds"] = timings
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    return report


def write(suite: dict, json_path: Optional[Path], plots_dir: Optional[Path]) -> list[Path]:
    """Save the JSON and the plots; returns the files written."""
    written = []
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(suite, indent=2) + "\n")
        written.append(json_path)
    if plots_dir is not None:
        from benchmarks import plots

        written += plots.write_all(suite, Path(plots_dir))
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: about a minute and a half")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT / "suite.json")
    parser.add_argument("--plots", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    suite = run(args.quick, progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    for path in write(suite, args.json, args.plots):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
