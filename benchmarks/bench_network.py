"""The far end on a home network: a phone (Chromium, 390x844) over a lossy, slow, narrow path.

Run: `python -m benchmarks.bench_network [out.json]` (default benchmarks/results/network.json). Needs Chromium.

The relay's side of the call goes through calls/network.py's user-space impairment (every UDP datagram
aioice sends or receives): "clean" is loopback as it is; "home" is 5% loss each way, 150 ms round trip and
an 800 kbit/s bottleneck each way with a 200 ms drop-tail queue. The call sends Opus with in-band FEC
(expected loss 5%). Measured in the far end's browser, over `MEASURE_S` seconds after a warm-up:
- decoded frames a second (framesDecoded over the window) and the worst 2-second stretch;
- the longest run of audio the browser had to conceal (join.js samples concealedSamples every 50 ms; runs
  during silence do not count): what she hears as a gap;
- A/V skew at playout: (video - audio) latency, capture to playout = the relay's own send skew (its
  pipeline measures it) + the difference of the two streams' estimatedPlayoutTimestamp (WebRTC stats: the
  sender-clock time of what each stream is playing now).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from calls.media_options import MediaOptions
from calls.network import Impairment, impaired_paths, video_bitrate
from calls.serve import ServeOptions, start_call
from calls.sources import FileSource

OUT = Path(__file__).resolve().parent / "results" / "network.json"
WARMUP_S = 6.0
MEASURE_S = 20.0
PROFILES = {
    "clean": dict(),
    "home": dict(loss=0.05, delay_s=0.075, rate_bps=800_000, queue_s=0.2),
}

STATS_JS = """(async () => {
  const pc = window.evercall && window.evercall.pc;
  if (!pc) return null;
  const o = { t: performance.now(), state: pc.connectionState, longestGapMs: window.evercall.gaps.longestMs };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') Object.assign(o, { frames: s.framesDecoded,
      vPlayout: s.estimatedPlayoutTimestamp, w: s.frameWidth, h: s.frameHeight, freezes: s.freezeCount,
      freezeS: s.totalFreezesDuration, vLost: s.packetsLost, vRecv: s.packetsReceived, nack: s.nackCount,
      pli: s.pliCount, vBytes: s.bytesReceived });
    if (s.type === 'inbound-rtp' && s.kind === 'audio') Object.assign(o, { samples: s.totalSamplesReceived,
      concealed: s.concealedSamples, aPlayout: s.estimatedPlayoutTimestamp, aLost: s.packetsLost,
      aRecv: s.packetsReceived, fec: s.fecPacketsReceived, aBytes: s.bytesReceived });
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) o.rtt = s.currentRoundTripTime;
  });
  return o;
})()"""


async def _until(page, expression: str, timeout: float) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {expression[:80]}")


async def measure(persona, clip: Path, profile: dict, seconds: float = MEASURE_S) -> dict:
    """One call over one impaired path; the far end's figures over `seconds`."""
    from tests.browser import PHONE_UPRIGHT, devtools_page

    impairment = Impairment(**profile)
    media = MediaOptions(audio_fec_pct=5)
    with impaired_paths(impairment):
        call = await start_call(persona, FileSource(clip, loop=True), ServeOptions(port=0, media=media))
        try:
            async with devtools_page(call.join_url, PHONE_UPRIGHT, autoplay_without_tap=True) as (page, browser):
                await _until(page, "(() => { const r = window.evercall && window.evercall.lastReport;"
                                   " return r && r.video && r.video.framesDecoded > 30; })()", 60)
                await asyncio.sleep(WARMUP_S)
                await page.evaluate("window.evercall.gaps.longestMs = 0")
                samples, relay_skews, bitrates = [], [], []
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    samples.append(await page.evaluate(STATS_JS))
                    skew = call.state.pipeline.stats()["av"]["skew_ms"]
                    if skew is not None:
                        relay_skews.append(skew)
                    if call.state.peer is not None and (b := video_bitrate(call.state.peer)) is not None:
                        bitrates.append(b)
                    await asyncio.sleep(0.5)
        finally:
            await call.stop()
    return summarise(samples, relay_skews, bitrates, impairment)


def summarise(samples: list[dict], relay_skews: list[float], bitrates: list[int], impairment: Impairment) -> dict:
    good = [s for s in samples if s and s.get("frames") is not None]
    first, last = good[0], good[-1]
    span_s = (last["t"] - first["t"]) / 1000
    fps = (last["frames"] - first["frames"]) / span_s
    worst = min(((b["frames"] - a["frames"]) / ((b["t"] - a["t"]) / 1000)
                 for a, b in zip(good, good[4:])), default=None)  # 2 s windows (samples every 0.5 s)
    playout = [s["vPlayout"] - s["aPlayout"] for s in good if s.get("vPlayout") and s.get("aPlayout")]
    relay = statistics.median(relay_skews) if relay_skews else 0.0
    # (video - audio) latency: the relay's own send skew plus the later sender time audio is playing.
    skews = [relay - p for p in playout]
    lost = (last.get("vLost", 0) + last.get("aLost", 0)) - (first.get("vLost", 0) + first.get("aLost", 0))
    recv = (last.get("vRecv", 0) + last.get("aRecv", 0)) - (first.get("vRecv", 0) + first.get("aRecv", 0))
    return {
        "seconds": round(span_s, 1),
        "fps_decoded": round(fps, 1),
        "fps_worst_2s": None if worst is None else round(worst, 1),
        "frame_size": f"{last.get('w')}x{last.get('h')}",
        "freezes": (last.get("freezes") or 0) - (first.get("freezes") or 0),
        "longest_audio_gap_ms": round(last.get("longestGapMs", 0.0), 1),
        "concealed_share": round(((last.get("concealed") or 0) - (first.get("concealed") or 0))
                                 / max(1, (last.get("samples") or 0) - (first.get("samples") or 0)), 4),
        "fec_packets": (last.get("fec") or 0) - (first.get("fec") or 0),
        "av_skew_ms_median": round(statistics.median(skews), 1) if skews else None,
        "av_skew_ms_max_abs": round(max(abs(s) for s in skews), 1) if skews else None,
        "relay_send_skew_ms": round(relay, 1),
        "loss_seen_pct": round(100 * lost / max(1, lost + recv), 2),
        "rtt_ms": None if last.get("rtt") is None else round(1000 * last["rtt"], 1),
        "kbps_in": round(8 * ((last.get("vBytes", 0) + last.get("aBytes", 0))
                              - (first.get("vBytes", 0) + first.get("aBytes", 0))) / span_s / 1000, 1),
        "video_target_kbps_median": round(statistics.median(bitrates) / 1000) if bitrates else None,
        "nacks": (last.get("nack") or 0) - (first.get("nack") or 0),
        "plis": (last.get("pli") or 0) - (first.get("pli") or 0),
        "path_drops": dict(impairment.counts),
    }


async def main(out: Path) -> dict:
    import os

    from calls.demo import demo_assets
    from engine.persona import load_persona_dir

    home = Path(os.environ.get("EVERCALL_HOME") or tempfile.mkdtemp(prefix="evercall-bench-"))
    os.environ["EVERCALL_HOME"] = str(home)
    demo = demo_assets(home / "demo")
    persona = load_persona_dir(demo.persona_dir, name="demo")
    results = {"profiles": PROFILES, "measure_s": MEASURE_S}
    for name, profile in PROFILES.items():
        results[name] = await measure(persona, demo.operator_clip, profile)
        print(name, json.dumps(results[name]), flush=True)
    targets = {"fps_decoded": ">= 20", "longest_audio_gap_ms": "<= 200", "av_skew_ms_max_abs": "<= 60"}
    home_run = results["home"]
    results["home_meets"] = {
        "fps_decoded": home_run["fps_decoded"] >= 20,
        "longest_audio_gap_ms": home_run["longest_audio_gap_ms"] <= 200,
        "av_skew_ms_max_abs": home_run["av_skew_ms_max_abs"] is not None and home_run["av_skew_ms_max_abs"] <= 60,
    }
    results["targets"] = targets
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
