"""Put the latest benchmark figures in README.md, between `<!-- bench:start -->` and `<!-- bench:end -->`.

Run: `python -m benchmarks.readme_table` (reads benchmarks/results/suite.json; `--run` measures the quick
suite first). Only the text between the markers changes; without the markers nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PLOTS = (("latency_hist.png", "latency histograms"), ("latency_stages.png", "where the time goes"),
         ("gate_ratios.png", "CI gate ratios"), ("scaling.png", "calls per machine"))


def _ms(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def _pair(a: Optional[float], b: Optional[float]) -> str:
    if a is None and b is None:
        return "–"
    return f"{'–' if a is None else f'{a:.0f}'} / {'–' if b is None else f'{b:.0f}'} ms"


def latency_rows(suite: dict) -> list[str]:
    paths = suite.get("latency", {}).get("paths", {})
    names = [n for n in ("passthrough", "default", "passthrough_no_align", "passthrough_stock_receivers",
                         "passthrough_opus_20ms") if n in paths]
    if not names:
        return []
    titles = {"passthrough": "passthrough relay", "default": "default filters",
              "passthrough_no_align": "passthrough, no A/V hold", "passthrough_stock_receivers": "passthrough, stock aiortc receive",
              "passthrough_opus_20ms": "passthrough, 20 ms Opus packets"}
    rows = [f"| same run, loopback | {' | '.join(titles[n] for n in names)} |",
            "| --- |" + " ---: |" * len(names)]

    def row(label: str, cell) -> None:
        rows.append(f"| {label} | {' | '.join(cell(paths[n]) for n in names)} |")

    row("video, capture → decoded at far end (p50 / p95)",
        lambda p: _pair(p["video"]["latency_ms"]["p50"], p["video"]["latency_ms"]["p95"]))
    row("audio, click captured → heard (p50 / p95)",
        lambda p: _pair(p["audio"]["latency_ms"]["p50"], p["audio"]["latency_ms"]["p95"]))
    row("far-end A/V skew, video − audio (p50)", lambda p: _ms(p["av_skew_ms"]["far_end_p50"]))
    row("frames received / captured", lambda p: "–" if p["video"]["fps_ratio"] is None
        else f"{p['video']['fps_ratio']:.2f} ({p['video']['received_fps']:.1f} fps)")
    row("face filter in the call (p50)", lambda p: _ms(p["filters_ms"]["face_p50"]))
    row("voice filter: latency + processing (p50)", lambda p: _ms(p["filters_ms"]["voice_own"]))
    row("added beyond the filters, video / audio (p50)",
        lambda p: _pair(p["added_beyond_filters_ms"]["video_p50"], p["added_beyond_filters_ms"]["audio_p50"]))
    row("added beyond the filters, video / audio (p95)",
        lambda p: _pair(p["added_beyond_filters_ms"]["video_p95"], p["added_beyond_filters_ms"]["audio_p95"]))
    row("… of which A/V hold (video) / buffering (audio)",
        lambda p: _pair(p["stages_ms"]["video_av_hold"], p["stages_ms"]["audio_buffering"]))
    row("… of which WebRTC leg, video / audio (p50)",
        lambda p: _pair(p["stages_ms"]["video_transport"], p["stages_ms"]["audio_transport"]))
    return rows


def filter_rows(suite: dict) -> list[str]:
    rows = ["| filters on their own | figure |", "| --- | --- |"]
    face, voice, wm = suite.get("face", {}), suite.get("voice", {}), suite.get("watermark", {})
    if "median_ms" in face:
        rows.append(f"| face swap, 640x480 | {face['median_ms']:.1f} ms/frame median, {face['p95_ms']:.1f} p95; "
                    f"{face.get('identity_closer_to_persona', 0) or 0:.0%} of frames closer to the persona |")
    if "speed_one_core" in voice:
        sim = voice.get("similarity_to_persona", {}).get("male_to_female", {})
        rows.append(f"| voice conversion, 48 kHz | real-time factor {voice['speed_one_core']['rtf_voicestream_48k_10ms_chunks']}"
                    f" on one core, {voice['latency_ms']['voicestream_48k']:.1f} ms algorithmic latency; "
                    f"similarity to persona {sim.get('before', '–')} → {sim.get('after_streaming_cold_start', '–')} |")
    if "mark_ms_640x480" in wm:
        det = wm.get("detection", {}).get("talking_head", {}).get("vp8_500k", {})
        rows.append(f"| watermark | {wm['mark_ms_640x480']['median']:.2f} ms/frame to mark; PSNR "
                    f"{wm['psnr_db']['mean']:.1f} dB; found in {det.get('rate', 0):.0%} of 1 s windows after VP8 500 kbps |")
    return rows if len(rows) > 2 else []


def render(suite: dict, plots_rel: str) -> str:
    """The markdown that goes between the markers."""
    m = suite.get("machine", {})
    parts = [f"Measured {suite.get('timestamp', '?')[:10]} with `evercall bench{' --quick' if suite.get('quick') else ''}` "
             f"on {m.get('cpus_usable', m.get('cpu_count', '?'))} CPU cores ({m.get('cpu_model', m.get('machine', ''))}), "
             f"{'GPU: ' + m['gpu'] if m.get('gpu') else 'no GPU'}, Python {m.get('python', '?')}; relay and far end "
             "share the machine (loopback). Compare columns, not machines.", ""]
    parts += latency_rows(suite)
    rows = filter_rows(suite)
    if rows:
        parts += [""] + rows
    scan = suite.get("scaling") or []
    if scan:
        held = {}
        for kind in ("default", "passthrough"):
            ok = [r["calls"] for r in scan if r["kind"] == kind and (r.get("fps_ratio_min") or 0) >= 0.85]
            held[kind] = max(ok) if ok else 0
        parts += ["", f"Calls at once on this machine with every far end getting at least 0.85 of the camera's "
                      f"frames (one process per call): default filters {held['default']}, passthrough relay "
                      f"{held['passthrough']}. See docs/SCALING.md."]
    gate = suite.get("gate")
    if gate:
        verdict = "passed" if gate.get("passed") else f"failed: {', '.join(gate.get('failed', []))}"
        parts += ["", f"CI gate (ratios only, margins in `benchmarks/gate.py`): {verdict}."]
    links = [f"[{title}]({plots_rel}/{name})" for name, title in PLOTS]
    parts += ["", "Plots: " + ", ".join(links) + "."]
    return "\n".join(parts)


def update_readme(readme: Path, block: str) -> bool:
    """Replace what is between the markers; False (file untouched) when the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return False
    new = text[:start + len(START)] + "\n" + block.rstrip() + "\n" + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/suite.json"),
                        help="suite result to show (default benchmarks/results/suite.json)")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--plots", type=Path, default=None,
                        help="folder of the PNGs (default: the JSON's folder); linked relative to the README")
    parser.add_argument("--run", action="store_true", help="measure the quick suite first and save it to --json")
    args = parser.parse_args(argv)
    plots = args.plots or args.json.parent
    if args.run or not args.json.is_file():
        from benchmarks import suite as suite_mod

        print(f"measuring the quick suite into {args.json} ...", file=sys.stderr)
        suite = suite_mod.run(quick=True)
        suite_mod.write(suite, args.json, plots)
    else:
        suite = json.loads(args.json.read_text())
    rel = Path(os.path.relpath(plots.resolve(), args.readme.resolve().parent)).as_posix()
    if not update_readme(args.readme, render(suite, rel)):
        print(f"error: {args.readme} has no {START} ... {END} markers: add them where the table should go",
              file=sys.stderr)
        return 2
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
