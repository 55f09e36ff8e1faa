"""`evercall bench` (also `python -m benchmarks`): measure the relay, the filters and the watermark on this
machine; optionally gate on them.

It lives with the benchmarks, above calls/ in the layers; `evercall bench` (calls/cli.py) starts it as
`python -m benchmarks` with the same arguments, so the calls package never imports the benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("benchmarks") / "results"

DESCRIPTION = """\
Measure evercall on this machine and write one JSON file and PNG plots.

A synthetic operator (the demo photo with a frame-number barcode, and audio with a click every 500 ms)
goes through the real relay twice, once with no filters (passthrough) and once with the demo persona's
filters (default); an aiortc far end on loopback reads the barcodes and hears the clicks, which gives
glass-to-glass video and audio latency, frame rate and far-end lip sync. Then the face filter, the voice
filter and the watermark are measured on their own.

Figures from a shared or busy machine move from run to run: compare ratios inside one result (every
path is measured in the same run), and results only between runs on the same kind of machine.
"""

EPILOG = """\
examples:
  evercall bench --quick                     about a minute and a half; JSON and PNGs in benchmarks/results/
  evercall bench --quick --gate              the CI check: exit 1 when a ratio passes its margin
  evercall bench --json out.json --plots docs/bench
  python -m benchmarks.readme_table          put the latest figures in README.md
"""


def handler(args: argparse.Namespace) -> int:
    """Run the suite, write its outputs, print the headline and (with --gate) the gate's verdict."""
    from benchmarks import gate, suite

    json_path = args.json or DEFAULT_DIR / "suite.json"
    plots_dir = args.plots or DEFAULT_DIR
    started = time.perf_counter()
    result = suite.run(args.quick, progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    written = suite.write(result, json_path, None if args.no_plots else plots_dir)
    for line in headline(result):
        print(line)
    print(f"took {time.perf_counter() - started:.0f} s; wrote {', '.join(str(p) for p in written)}")
    if not args.gate:
        return 0
    if "gate" not in result:
        print("gate: FAILED (the latency benchmark did not run: "
              f"{result.get('latency', {}).get('error', 'unknown error')})")
        return 1
    verdict = gate.evaluate(result["latency"])
    print("\n".join(verdict.lines))
    print("gate: PASSED" if verdict.passed else f"gate: FAILED ({', '.join(verdict.failed)})")
    return 0 if verdict.passed else 1


def headline(result: dict) -> list[str]:
    """A few lines a person reads after the run: latency per path, frame rate, lip sync, filter speed."""
    lines = []
    latency = result.get("latency", {})
    for name, p in latency.get("paths", {}).items():
        v, a = p["video"]["latency_ms"], p["audio"]["latency_ms"]
        lines.append(f"{name:28s} video p50 {v['p50']} ms (p95 {v['p95']}), audio p50 {a['p50']} ms, "
                     f"{p['video']['received_fps']} fps received, far-end skew {p['av_skew_ms']['far_end_p50']} ms")
    if "error" in latency:
        lines.append(f"latency: {latency['error']}")
    face = result.get("face", {})
    if "median_ms" in face:
        lines.append(f"face filter alone: {face['median_ms']} ms/frame median, {face['p95_ms']} p95")
    voice = result.get("voice", {})
    if "speed_one_core" in voice:
        lines.append(f"voice filter alone: real-time factor {voice['speed_one_core']['rtf_voicestream_48k_10ms_chunks']}"
                     f" on one core, {voice['latency_ms']['voicestream_48k']} ms algorithmic latency")
    for name in ("face", "voice", "watermark"):
        if "error" in result.get(name, {}):
            lines.append(f"{name}: skipped ({result[name]['error']})")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The bench command's arguments (shown by `evercall bench --help`)."""
    bench = argparse.ArgumentParser(prog="evercall bench", description=DESCRIPTION, epilog=EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--quick", action="store_true",
                       help="CI size: 6 s per relay path, short face/watermark runs (about 1.5 minutes); "
                            "without it: 20 s per path, three comparison paths and the calls-per-machine scan "
                            "(about 10 minutes on 2 cores)")
    bench.add_argument("--json", type=Path, metavar="PATH",
                       help=f"where to write the results (default {DEFAULT_DIR}/suite.json; the JSON says "
                            "whether it was a quick run)")
    bench.add_argument("--plots", type=Path, metavar="DIR", help=f"folder for the PNG plots (default {DEFAULT_DIR})")
    bench.add_argument("--no-plots", action="store_true", help="write the JSON only")
    bench.add_argument("--gate", action="store_true",
                       help="check the ratios against the margins in benchmarks/gate.py; exit 1 if any is past "
                            "its margin (one FAIL line each)")
    return bench


def main(argv: list[str] | None = None) -> int:
    return handler(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
