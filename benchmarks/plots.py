"""PNG plots of a suite result: latency histograms per path, where the time goes, calls per machine.

Written for people reading the README on a phone as well as a monitor: large fonts, few series, the
p50 printed on the chart, the machine and date in a footer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = {"passthrough": "#4C72B0", "default": "#DD8452", "passthrough_no_align": "#55A868",
           "passthrough_stock_receivers": "#8172B3", "passthrough_opus_20ms": "#937860"}
LABELS = {"passthrough": "passthrough relay", "default": "default filters",
          "passthrough_no_align": "passthrough, no A/V hold", "passthrough_stock_receivers": "passthrough, stock aiortc",
          "passthrough_opus_20ms": "passthrough, 20 ms Opus"}
STAGE_COLOURS = {"face filter": "#DD8452", "voice filter": "#DD8452", "A/V hold": "#C9C9C9",
                 "buffering": "#C9C9C9", "WebRTC": "#4C72B0"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 12, "axes.titlesize": 13, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 100})
    return plt


def _finish(fig, suite: dict, out: Path, rect: tuple[float, float, float, float], **layout) -> Path:
    """Add the machine footer, lay the figure out inside `rect`, save it to `out` and free it."""
    m = suite.get("machine", {})
    text = (f"{suite.get('timestamp', '')[:16].replace('T', ' ')}  ·  {m.get('cpu_count', '?')} CPUs, "
            f"{m.get('platform', '')}, Python {m.get('python', '')}  ·  loopback, relay and far end on one machine")
    fig.text(0.01, 0.01, text, fontsize=9, color="#666666")
    fig.tight_layout(rect=rect, **layout)
    fig.savefig(out)
    _pyplot().close(fig)
    return out


def latency_histograms(suite: dict, out: Path) -> Path:
    """Video and audio glass-to-glass latency, one histogram per path, p50 marked."""
    plt = _pyplot()
    paths = suite["latency"]["paths"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    for ax, kind, title in ((axes[0], "video", "Video: capture → decoded at far end"),
                            (axes[1], "audio", "Audio: click captured → heard at far end")):
        series = {n: p["samples_ms"][kind] for n, p in paths.items() if p.get("samples_ms", {}).get(kind)}
        if not series:
            ax.set_axis_off()
            continue
        hi = float(np.percentile(np.concatenate([np.asarray(v) for v in series.values()]), 99)) * 1.1
        bins = np.linspace(0, max(hi, 10.0), 40)
        for name, values in series.items():
            colour = COLOURS.get(name, None)
            p50 = float(np.median(values))
            ax.hist(np.clip(values, 0, bins[-1]), bins=bins, alpha=0.45, color=colour,
                    label=f"{LABELS.get(name, name)}: p50 {p50:.0f} ms, p95 {np.percentile(values, 95):.0f} ms "
                          f"(n={len(values)})")
            ax.hist(np.clip(values, 0, bins[-1]), bins=bins, histtype="step", color=colour, linewidth=1.5)
            ax.axvline(p50, color=colour, linewidth=2, linestyle="--")
        ax.set_title(title)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("frames" if kind == "video" else "clicks")
        ax.legend(fontsize=10, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.17))
    fig.suptitle("Latency through the relay (paths measured in the same run; dashed line: p50)",
                 fontsize=14, fontweight="bold")
    return _finish(fig, suite, out, (0, 0.04, 1, 0.96))


def _stage_rows(paths: dict) -> list[tuple[str, list[tuple[str, float]]]]:
    rows = []
    for name, p in paths.items():
        s = p["stages_ms"]
        label = LABELS.get(name, name)
        rows.append((f"{label}\nvideo", [("face filter", s.get("video_face") or 0.0),
                                         ("A/V hold", max(0.0, s.get("video_av_hold") or 0.0)),
                                         ("WebRTC", s.get("video_transport") or 0.0)]))
        rows.append((f"{label}\naudio", [("voice filter", s.get("audio_voice") or 0.0),
                                         ("buffering", max(0.0, s.get("audio_buffering") or 0.0)),
                                         ("WebRTC", s.get("audio_transport") or 0.0)]))
    return rows


def stage_bars(suite: dict, out: Path) -> Path:
    """Stacked p50 bars per path: filter, deliberate hold/buffering, WebRTC (encode, send, jitter, decode)."""
    plt = _pyplot()
    rows = _stage_rows(suite["latency"]["paths"])
    fig, ax = plt.subplots(figsize=(12, 0.75 * len(rows) + 2.2))
    ys = np.arange(len(rows))[::-1]
    for y, (label, parts) in zip(ys, rows):
        left = 0.0
        for stage, ms in parts:
            ax.barh(y, ms, left=left, color=STAGE_COLOURS[stage], edgecolor="white")
            if ms >= 9:
                ax.text(left + ms / 2, y, f"{ms:.0f}", ha="center", va="center", fontsize=10)
            left += ms
        ax.text(left + 2, y, f"{left:.0f} ms", va="center", fontsize=11, fontweight="bold")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=STAGE_COLOURS["face filter"], label="filter (face / voice)"),
                       Patch(color=STAGE_COLOURS["A/V hold"], label="A/V hold (video) / buffering (audio)"),
                       Patch(color=STAGE_COLOURS["WebRTC"], label="WebRTC: track, encode, send, jitter buffer, decode")],
              frameon=False, fontsize=10, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows], fontsize=10)
    ax.set_xlabel("median latency (ms)")
    ax.set_xlim(0, max(sum(ms for _, ms in parts) for _, parts in rows) * 1.15 + 5)
    frame_ms = suite["latency"]["settings"]["frame_interval_ms"]
    ax.axvline(frame_ms, color="#999999", linestyle=":", linewidth=1)
    ax.text(frame_ms, ys[-1] - 0.62, " one frame interval", color="#777777", fontsize=9)
    ax.set_ylim(ys[-1] - 0.75, ys[0] + 0.5)
    fig.suptitle("Where the time goes (p50 per stage)", fontsize=14, fontweight="bold")
    return _finish(fig, suite, out, (0, 0.04, 1, 0.95))


def _gate_rows(gate: dict) -> list[tuple[str, float | None, float | None, float | None, bool]]:
    """(label, value, lowest allowed, highest allowed, failed); a min/max pair of one ratio becomes one row."""
    ratios, margins, failed = gate.get("ratios", {}), gate.get("margins", {}), set(gate.get("failed", []))
    rows, done = [], set()
    for name, value in ratios.items():
        base = name.removesuffix("_min").removesuffix("_max")
        if base in done:
            continue
        done.add(base)
        twins = [n for n in ratios if n.removesuffix("_min").removesuffix("_max") == base]
        lo = next((margins[n]["min"] for n in twins if "min" in margins.get(n, {})), None)
        hi = next((margins[n]["max"] for n in twins if "max" in margins.get(n, {})), None)
        rows.append((base.replace("_", " "), value, lo, hi, any(n in failed for n in twins)))
    return rows


def budget_bars(suite: dict, out: Path) -> Path:
    """One strip per gate ratio: the allowed range shaded green, the measured value as a dot."""
    plt = _pyplot()
    rows = _gate_rows(suite.get("gate", {}))
    if not rows:
        return out
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 0.62 * len(rows) + 1.4))
    axes = np.atleast_1d(axes)
    for ax, (label, value, lo, hi, bad) in zip(axes, rows):
        known = [x for x in (value, lo, hi, 0.0) if x is not None]
        left, right = min(known), max(known)
        pad = 0.25 * (right - left or 1.0)
        left, right = left - (pad if left < 0 else 0), right + pad
        ax.axvspan(left, right, color="#F4CCCC")
        ax.axvspan(lo if lo is not None else left, hi if hi is not None else right, color="#D9EAD3")
        if value is not None:
            ax.plot([value], [0], "o", color="#C44E52" if bad else "#2E7D32", markersize=11)
            ax.annotate(f"{value:.2f}", (value, 0), xytext=(8, 0), textcoords="offset points", va="center",
                        fontsize=11, fontweight="bold", family="sans-serif")
        ax.set_xlim(left, right)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=11)
        ax.tick_params(axis="x", labelsize=9)
        for side in ("left", "top", "right"):
            ax.spines[side].set_visible(False)
    verdict = "passed" if suite["gate"].get("passed") else "FAILED"
    fig.suptitle(f"CI gate: {verdict} (green: allowed range, margins in benchmarks/gate.py)",
                 fontsize=14, fontweight="bold")
    return _finish(fig, suite, out, (0, 0.04, 1, 0.95), h_pad=0.6)


def scaling_plot(suite: dict, out: Path) -> Path | None:
    """Worst call's received frame rate against the number of calls run at once (one process each)."""
    rows = suite.get("scaling") or []
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for kind in sorted({r["kind"] for r in rows}):
        pts = [r for r in rows if r["kind"] == kind]
        ax.plot([r["calls"] for r in pts], [r["received_fps_min"] or 0 for r in pts], marker="o", linewidth=2,
                markersize=8, label=LABELS.get(kind, kind), color=COLOURS.get(kind))
        for r in pts:
            ax.annotate(f"{r['received_fps_min']:.0f}", (r["calls"], r["received_fps_min"] or 0),
                        xytext=(0, 8), textcoords="offset points", ha="center", fontsize=9)
    ax.axhline(30, color="#999999", linestyle=":")
    ax.text(0.98, 30.4, "camera: 30 fps", ha="right", fontsize=9, color="#777777",
            transform=ax.get_yaxis_transform())
    ax.axhline(30 * 0.85, color="#C44E52", linestyle="--", linewidth=1)
    ax.text(0.5, 30 * 0.85 - 1.6, "gate margin: 0.85 of the camera", ha="center", fontsize=9, color="#C44E52",
            transform=ax.get_yaxis_transform())
    ax.set_xticks(sorted({r["calls"] for r in rows}))
    ax.set_xlabel("calls at once on this machine (one process each, far-end client included)")
    ax.set_ylabel("worst call's received fps")
    ax.set_ylim(0, 34)
    ax.legend(frameon=False, loc="lower left")
    ax.set_title("Calls per machine (CPU only)", fontsize=14, fontweight="bold")
    return _finish(fig, suite, out, (0, 0.05, 1, 1))


def write_all(suite: dict, folder: Path) -> list[Path]:
    """Every plot the suite has data for; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if suite.get("latency", {}).get("paths"):
        written.append(latency_histograms(suite, folder / "latency_hist.png"))
        written.append(stage_bars(suite, folder / "latency_stages.png"))
    if suite.get("gate", {}).get("ratios"):
        written.append(budget_bars(suite, folder / "gate_ratios.png"))
    scaling = scaling_plot(suite, folder / "scaling.png")
    if scaling:
        written.append(scaling)
    return written
