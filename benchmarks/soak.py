"""A long call through the real relay: do memory and delay stay flat? (Not run in CI: it takes minutes.)

One far end (aiortc, tuned receivers) stays in a call on the default filters for `--minutes` (default 10).
Every window (30 s) records the process's resident memory and the window's video and audio latency (p50,
frame-stamped video and click-stamped audio, as in benchmarks/latency.py). The verdict compares the last
third of the call with the first third: memory may not grow by more than 10% and latencies by more than
one frame interval. Prints JSON; `--json PATH` also writes it.

    python -m benchmarks.soak --minutes 10 --json benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks.latency import (
    CLIENT_AUDIO_PREFETCH,
    Arrivals,
    BarcodeSource,
    _far_end,
    _heard_clicks,
    _video_latencies,
    default_pipeline,
    demo_operator_photo,
    hang_up,
    operator_frames,
)
from benchmarks.relay import start_relay
from calls.transport import receivers_tuned
from engine.media import now

FRAME_MS = 1000 / 30


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trim(arrivals: Arrivals, before: float) -> None:
    """Forget what arrived before `before`, so the measuring client itself does not grow."""
    arrivals.video = [(s, t) for s, t in arrivals.video if t >= before]
    arrivals.audio = [(t, a) for t, a in arrivals.audio if t >= before]


async def soak(minutes: float, window_s: float = 30.0) -> dict:
    pipeline = await asyncio.to_thread(default_pipeline)
    source = BarcodeSource(operator_frames(demo_operator_photo()))
    _, runner, url = await start_relay(pipeline, source)
    arrivals = Arrivals()
    first = asyncio.Event()
    windows = []
    pc, tasks = None, []
    try:
        with receivers_tuned(audio_prefetch=CLIENT_AUDIO_PREFETCH):
            pc, tasks = await _far_end(url, arrivals, first)
        await asyncio.wait_for(first.wait(), 30)
        await asyncio.sleep(3.0)
        end = now() + minutes * 60
        while now() < end:
            t0 = now()
            await asyncio.sleep(window_s)
            t1 = now()
            await asyncio.sleep(0.6)
            video, frames = _video_latencies(arrivals, source, t0, t1)
            heard, clicks = _heard_clicks(arrivals, source, t0, t1)
            ears = [(heard[j] - source.click_t[j]) * 1000 for j in heard]
            stats = pipeline.stats()
            windows.append({
                "t_s": round(t1 - (end - minutes * 60), 1),
                "rss_mb": round(rss_mb(), 1),
                "video_p50_ms": round(float(np.median(video)), 1) if video else None,
                "audio_p50_ms": round(float(np.median(ears)), 1) if ears else None,
                "frames_received_ratio": round(frames / max(window_s * 30, 1), 3),
                "clicks_heard": f"{len(heard)}/{clicks}",
                "face_dropped_total": stats["face"]["dropped"],
            })
            print(json.dumps(windows[-1]), flush=True)
            _trim(arrivals, t1 - 1.0)
    finally:
        await hang_up(tasks, pc, source, runner, pipeline)
    return {"minutes": minutes, "window_s": window_s, "windows": windows, "verdict": verdict(windows),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "when": time.strftime("%F %T")}


def verdict(windows: list[dict]) -> dict:
    """Last third against first third: memory within +10%, latencies within one frame interval."""
    third = max(len(windows) // 3, 1)
    head, tail = windows[:third], windows[-third:]

    def mean(rows: list[dict], key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else None

    out: dict = {}
    for key, limit, relative in (("rss_mb", 0.10, True), ("video_p50_ms", FRAME_MS, False),
                                 ("audio_p50_ms", FRAME_MS, False)):
        a, b = mean(head, key), mean(tail, key)
        growth = None if a is None or b is None else (b - a) / a if relative else b - a
        out[key] = {"first": None if a is None else round(a, 1), "last": None if b is None else round(b, 1),
                    "growth": None if growth is None else round(growth, 3),
                    "flat": growth is not None and growth <= limit}
    out["flat"] = all(v["flat"] for v in out.values() if isinstance(v, dict))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the call lasts (default 10)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per measurement window (default 30)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(soak(args.minutes, args.window))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0 if result["verdict"]["flat"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
