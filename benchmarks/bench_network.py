"""The far end on a home network: a phone (Chromium, 390x844) over a lossy, slow, narrow path.

Run: `python -m benchmarks.bench_network [--filters] [out.json]` (default benchmarks/results/network.json).
Needs Chromium. The relay is a passthrough (the network path alone, as `evercall bench`'s passthrough
column) unless `--filters` puts the demo persona's face swap and voice in, as `evercall serve` would.

The relay's side of the call goes through calls/network.py's user-space impairment (every UDP datagram
aioice sends or receives): "clean" is loopback as it is; "home" is 5% loss each way, 150 ms round trip and
an 800 kbit/s bottleneck each way with a 200 ms drop-tail queue. The call sends Opus with in-band FEC
(expected loss 5%). Measured in the far end's browser, over `MEASURE_S` seconds after a warm-up:
- decoded frames a second (framesDecoded over the window) and the worst 2-second stretch;
- the longest run of audio the browser had to conceal (join.js samples concealedSamples every 50 ms; runs
  during silence do not count): what she hears as a gap;
- A/V skew at playout, (video - audio) latency from capture to what she sees and hears (positive: the
  picture late), measured two independent ways:
  1. the figure reported (`av_skew_ms_median`, `_p90_abs`, `_max_abs`): the browser's own playout position
     of each medium, `estimatedPlayoutTimestamp` of the inbound video and audio read in one getStats call
     every 0.5 s. Each is the sender-clock time of what is being played out now (video: the frame last handed
     to the compositor; audio: NetEq's playout position less the output device's delay), mapped by the
     relay's RTCP sender reports, which pair each RTP timestamp with the wall-clock moment its packet left.
     Their difference is the send-to-playout skew with no clock to align; the relay's capture-to-send
     difference (its pipeline's `av.skew_ms`, the A/V hold) is added. Sampled 40 times a run, not 10.
  2. the cross-check (`av_skew_ms_marks_median`): the operator source (`MarkSource`) is the operator photo
     with a white band flashed every 2 s and, at the same capture instant, a loud voiced burst after
     silence; the page (a script put in over DevTools) times each flash at requestVideoFrameCallback's
     expectedDisplayTime (when the compositor shows it) and each burst where the WebRTC audio sink hands it
     out (MediaStreamTrackProcessor on the received voice), both on performance.now(). On loopback the
     relay and the page share the wall clock, so each medium's latency is also given alone
     (`playout.mark_latency_ms` beside `playout.stats_latency_ms`).
  Why 1 is trusted: it is what the browser itself plays, it is not a tap with a buffer of its own, and on a
  machine at load average 2-9 the two methods agreed within 2-11 ms, clean and impaired (ten runs; the
  latest in results/network.json, each run's pair of medians). What each leaves out: 1 does not see the relay's crop and encode
  between its send-time note and the packet leaving, 2 does not see the audio device's buffer after the
  sink; neither is measured alone, and the methods' agreement bounds them. Under heavy load from other work
  on the same cores (load average 8 and up) they part by 30 ms and more: the headless browser's audio
  output path then grows a buffer of its own that 1 counts and 2 cannot see; `load_average_1min` is kept
  per run for that reason. The Web Audio tap the first version used (`av_skew_ms_each`, kept for
  comparison) adds the MediaStreamAudioSourceNode's FIFO, 55-70 ms and moving with the load (compare
  `playout.mark_latency_ms.audio_web_audio` with `audio_sink`): why its figures wandered.
  The persona filters run as in a call with `--filters`, so the relay's own A/V hold is part of the figure.
- Why the picture is late on the impaired path: it waits for retransmitted packets (NACK, a round trip
  each) and the voice does not (Opus FEC, concealment): jitter buffers of 240-285 ms (video) against
  165-215 ms (audio) (`playout.jitter_buffer_ms`), and Chromium's own A/V sync, which should hold the voice
  back to match, leaves the picture 70-95 ms behind. Holding the voice back from the page (the audio
  receiver's jitterBufferTarget, steered by this lag) was tried: +1 and +8 ms in 20 s runs, but under load
  both delays climbed to 600-800 ms and the skew swung -380..+256 ms, so it was withdrawn.
- Chromium's sync is in force (the answer has both tracks in one msid stream with one CNAME, and aiortc's
  sender reports map both clocks to the moment each packet leaves; estimatedPlayoutTimestamp exists only
  where the sync runs); its estimate of the picture's delay is what falls short. So the relay holds the
  voice back itself (calls/network.py: VoiceHold, applied in PersonaAudioTrack): the page reports the lag
  it sees once a second, the hold follows its median within 0-150 ms in 20 ms steps, changed only in
  pauses. The browser cannot see that hold (the sender reports map the voice to when it leaves), so its
  sync does not fight it, and the lag it reports does not depend on it; the skew figure subtracts the
  hold of each sample's moment (`voice_hold_ms`). `--no-hold` keeps it at 0, for comparison.

Run: `python -m benchmarks.bench_network --keep-crop --runs=3` (the figures in the README);
`--alternate=3` instead: three pairs of impaired runs, with and without the voice hold
(results/network_alternate.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.relay import start_relay
from calls.media_options import MediaOptions
from calls.network import Impairment, impaired_paths, video_bitrate
from calls.sources import CALL_SIZE, Source
from engine.media import AudioChunk, VideoFrame

MARK_EVERY_S = 2.0  # a flash and a burst together, this often
FLASH_S = 0.2
BURST_S = 0.2
RATE = 48000
BLOCK = 480

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
  const stats = await pc.getStats();
  o.wall = performance.timeOrigin + performance.now();  // the Unix clock the relay's RTCP sender reports use
  stats.forEach((s) => {
    // The browser's own lip-sync figures: the sender-clock (NTP) time of what it plays now, and the mean
    // time a frame / a sample waited in the jitter buffer.
    if (s.type === 'inbound-rtp') Object.assign(o, { [s.kind[0] + 'Ept']: s.estimatedPlayoutTimestamp,
      [s.kind[0] + 'JbDelay']: s.jitterBufferDelay, [s.kind[0] + 'JbCount']: s.jitterBufferEmittedCount,
      [s.kind[0] + 'JbTarget']: s.jitterBufferTargetDelay, [s.kind[0] + 'Proc']: s.totalProcessingDelay });
    if (s.type === 'inbound-rtp' && s.kind === 'video') Object.assign(o, { frames: s.framesDecoded,
      w: s.frameWidth, h: s.frameHeight, freezes: s.freezeCount,
      freezeS: s.totalFreezesDuration, vLost: s.packetsLost, vRecv: s.packetsReceived, nack: s.nackCount,
      pli: s.pliCount, vBytes: s.bytesReceived });
    if (s.type === 'inbound-rtp' && s.kind === 'audio') Object.assign(o, { samples: s.totalSamplesReceived,
      concealed: s.concealedSamples, aLost: s.packetsLost,
      aRecv: s.packetsReceived, fec: s.fecPacketsReceived, aBytes: s.bytesReceived });
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) o.rtt = s.currentRoundTripTime;
  });
  return o;
})()"""


class MarkSource(Source):
    """The operator: a face that drifts a little, silent but for a voiced burst, with a white flash of the
    picture at the very capture instant each burst starts (every MARK_EVERY_S)."""

    def __init__(self, photo: np.ndarray, fps: int = 30) -> None:
        super().__init__()
        w, h = CALL_SIZE
        scale = max(w / photo.shape[1], h / photo.shape[0]) * 1.06
        self._big = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
        self._fps = fps
        self._t0 = 0.0
        t = np.arange(int(BURST_S * RATE)) / RATE
        saw = 2 * ((150 * t) % 1.0) - 1  # a voiced, vowel-like buzz the voice filter treats as speech
        self._burst = (0.5 * saw * np.minimum(1.0, t / 0.005)).astype(np.float32)

    def start(self, on_video, on_audio) -> "MarkSource":
        # The flash is a white band just below the chin: a whole white frame has no face, and the face
        # filter would not pass it; below the chin it stays inside any framing of the face.
        from calls.framing import FaceDetector

        w, h = CALL_SIZE
        big = self._big
        still = big[(big.shape[0] - h) // 2:(big.shape[0] - h) // 2 + h, (big.shape[1] - w) // 2:(big.shape[1] - w) // 2 + w]
        detector = FaceDetector()
        _, cy, fh = detector(np.ascontiguousarray(still))
        detector.close()
        self._band = slice(int(cy + 0.6 * fh), int(cy + 1.05 * fh))
        self._t0 = time.monotonic() + 1.0
        # The marks' capture instants on the Unix clock (the browser's performance.timeOrigin + now() and the
        # relay's RTCP sender reports use the same one on loopback): mark n is captured at t0_wall + n * every.
        self.t0_wall = time.time() - time.monotonic() + self._t0
        self._spawn(lambda: self._video(on_video), "mark-camera")
        self._spawn(lambda: self._audio(on_audio), "mark-mic")
        return self

    def _video(self, on_video) -> None:
        w, h = CALL_SIZE
        big = self._big
        cy, cx = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
        seq = 0
        while not self._stop.is_set():
            t = self._t0 + seq / self._fps
            wait = t - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
            dx = round(4 * np.sin(seq / 20))
            image = np.ascontiguousarray(big[cy:cy + h, cx + dx:cx + dx + w])
            if (t - self._t0) % MARK_EVERY_S < FLASH_S:
                image = image.copy()
                image[self._band] = 255
            on_video(VideoFrame(image, t, seq))
            seq += 1

    def _audio(self, on_audio) -> None:
        k = 0
        every = int(MARK_EVERY_S * RATE)
        rng = np.random.default_rng(3)
        while not self._stop.is_set():
            t_first = self._t0 + k * BLOCK / RATE
            wait = t_first + BLOCK / RATE - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
            block = (0.002 * rng.standard_normal(BLOCK)).astype(np.float32)
            pos = (np.arange(k * BLOCK, (k + 1) * BLOCK)) % every
            inside = pos < self._burst.size
            block[inside] += self._burst[pos[inside]]
            on_audio(AudioChunk(block, RATE, t_first, k))
            k += 1


# Put into the page over DevTools: when each flash is shown and each burst is heard, on one clock.
MARKS_JS = """(() => {
  const marks = { video: [], audio: [], origin: performance.timeOrigin };
  window.benchMarks = marks;
  const v = document.getElementById('remote');
  const c = document.createElement('canvas'); c.width = 16; c.height = 16;
  const x = c.getContext('2d', { willReadFrequently: true });
  let bright = false, base = null;
  const onFrame = (now, meta) => {
    x.drawImage(v, 0, 0, 16, 16);
    const d = x.getImageData(0, 0, 16, 16).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += d[i + 1];
    const mean = sum / (d.length / 4);
    if (base === null) base = mean;
    if (mean - base > 15 && !bright) { marks.video.push(meta.expectedDisplayTime || now); bright = true; }
    else if (mean - base < 7) { bright = false; base += 0.1 * (mean - base); }
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(new MediaStream(v.srcObject.getAudioTracks()));
  const proc = ctx.createScriptProcessor(256, 1, 1);
  let loud = false;
  proc.onaudioprocess = (e) => {
    const b = e.inputBuffer.getChannelData(0);
    let s = 0;
    for (let i = 0; i < b.length; i++) s += b[i] * b[i];
    const rms = Math.sqrt(s / b.length);
    const ts = ctx.getOutputTimestamp();
    const at = ts.performanceTime + 1000 * (e.playbackTime - ts.contextTime);
    if (rms > 0.05 && !loud) { marks.audio.push(at); loud = true; } else if (rms < 0.01) loud = false;
  };
  src.connect(proc); proc.connect(ctx.destination);
  // The same voice as the WebRTC audio sink hands it out, read as it comes (no Web Audio clock in between).
  marks.sink = [];
  if (window.MediaStreamTrackProcessor) {
    const reader = new MediaStreamTrackProcessor({ track: v.srcObject.getAudioTracks()[0] }).readable.getReader();
    let loud2 = false;
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const n = value.numberOfFrames, buf = new Float32Array(n);
        value.copyTo(buf, { planeIndex: 0, format: 'f32-planar' });
        value.close();
        let s2 = 0;
        for (let i = 0; i < n; i++) s2 += buf[i] * buf[i];
        const rms = Math.sqrt(s2 / n);
        if (rms > 0.05 && !loud2) { marks.sink.push(performance.now()); loud2 = true; } else if (rms < 0.01) loud2 = false;
      }
    })();
  }
  return ctx.state;
})()"""


def pair_marks(video: list[float], audio: list[float], within_ms: float = 600.0) -> list[float]:
    """(video - audio) ms for each flash that has a burst within `within_ms` (the nearest one)."""
    out = []
    for v in video:
        near = min(audio, key=lambda a: abs(a - v), default=None)
        if near is not None and abs(near - v) <= within_ms:
            out.append(v - near)
    return out


NTP_UNIX_MS = 2_208_988_800_000  # 1900 to 1970: estimatedPlayoutTimestamp is an NTP time in ms


def _spread(xs: list[float]) -> dict:
    """Median and the 10th-90th percentile range of `xs` (ms), rounded; None-filled when empty."""
    if not xs:
        return {"median": None, "p10": None, "p90": None, "n": 0}
    q = np.percentile(xs, [10, 50, 90])
    return {"median": round(float(q[1]), 1), "p10": round(float(q[0]), 1), "p90": round(float(q[2]), 1), "n": len(xs)}


def stats_latencies(samples: list[dict]) -> dict[str, list[float]]:
    """Per getStats sample, each medium's latency from the relay's send to playout (ms): the page's clock now
    minus estimatedPlayoutTimestamp, the sender-clock time of what the browser plays out now (video: the
    frame last handed to the compositor; audio: NetEq's playout position less the output device's delay).
    Valid where sender and page share one clock: loopback."""
    out: dict[str, list[float]] = {"video": [], "audio": [], "skew": [], "hold": []}
    for s in samples:
        ept_v, ept_a, wall = s.get("vEpt"), s.get("aEpt"), s.get("wall")
        if not (ept_v and ept_a and wall):
            continue
        lv = wall - (ept_v - NTP_UNIX_MS if ept_v > NTP_UNIX_MS else ept_v)
        la = wall - (ept_a - NTP_UNIX_MS if ept_a > NTP_UNIX_MS else ept_a)
        out["video"].append(lv)
        out["audio"].append(la)
        out["skew"].append(lv - la)
        out["hold"].append(s.get("hold_ms") or 0.0)  # the relay's voice hold when the sample was read
    return out


def mark_latencies(times: list[float], origin: float, t0_wall: float) -> list[float]:
    """Capture-to-playout latency (ms) of each detected mark: page time (performance.now, ms) on the Unix clock
    minus the capture instant of the mark it belongs to (the latest one before it; marks are 2 s apart)."""
    out = []
    for t in times:
        wall_s = (origin + t) / 1000
        n = int((wall_s - t0_wall) // MARK_EVERY_S)
        out.append(1000 * (wall_s - (t0_wall + n * MARK_EVERY_S)))
    return out


def jitter_buffer_ms(first: dict, last: dict, kind: str) -> float | None:
    """Mean jitter buffer delay per emitted frame/sample over the window, ms."""
    d = (last.get(kind + "JbDelay") or 0) - (first.get(kind + "JbDelay") or 0)
    n = (last.get(kind + "JbCount") or 0) - (first.get(kind + "JbCount") or 0)
    return round(1000 * d / n, 1) if n > 0 else None


async def _until(page, expression: str, timeout: float) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {expression[:80]}")


async def measure(photo: np.ndarray, profile: dict, seconds: float = MEASURE_S, persona=None,
                  hold: bool = True) -> dict:
    """One call over one impaired path; the far end's figures over `seconds`.

    persona None: a passthrough relay (the network path alone, as bench's "passthrough relay" column);
    else that persona's filters in swap mode, exactly as `evercall serve` builds them.
    hold False: the relay's voice hold (calls/network.py: VoiceHold) is kept at 0, for comparison."""
    from benchmarks.latency import default_pipeline, passthrough_pipeline
    from benchmarks.browser import PHONE_UPRIGHT, devtools_page

    impairment = Impairment(**profile)
    media = MediaOptions(audio_fec_pct=5)
    source = MarkSource(photo)
    with impaired_paths(impairment):
        pipeline = await asyncio.to_thread(passthrough_pipeline if persona is None else default_pipeline, *(
            () if persona is None else (persona,)))
        state, runner, url = await start_relay(pipeline, source, media)
        if not hold:
            state.voice_hold_max_ms = 0.0  # for the call: a reconnect (the outage) keeps it off too
        try:
            async with devtools_page(url, PHONE_UPRIGHT, autoplay_without_tap=True) as (page, browser):
                await _until(page, "(() => { const r = window.evercall && window.evercall.lastReport;"
                                   " return r && r.video && r.video.framesDecoded > 30; })()", 60)
                await asyncio.sleep(WARMUP_S)
                await page.evaluate("window.evercall.gaps.longestMs = 0")
                await page.evaluate(MARKS_JS)
                samples, relay_skews, bitrates = [], [], []
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    sample = await page.evaluate(STATS_JS)
                    if sample and state.voice_hold is not None:
                        sample["hold_ms"] = state.voice_hold.applied_ms
                    samples.append(sample)
                    skew = state.pipeline.stats()["av"]["skew_ms"]
                    if skew is not None:
                        relay_skews.append(skew)
                    if state.peer is not None and (b := video_bitrate(state.peer)) is not None:
                        bitrates.append(b)
                    await asyncio.sleep(0.5)
                marks = await page.evaluate("window.benchMarks")
                marks["t0_wall"] = source.t0_wall
        finally:
            source.stop()
            await runner.cleanup()
            pipeline.close()
    result = summarise(samples, relay_skews, bitrates, impairment, marks)
    result["load_average_1min"] = round(os.getloadavg()[0], 1)  # others' work on the same cores
    return result


def summarise(samples: list[dict], relay_skews: list[float], bitrates: list[int], impairment: Impairment,
              marks: dict) -> dict:
    good = [s for s in samples if s and s.get("frames") is not None]
    first, last = good[0], good[-1]
    span_s = (last["t"] - first["t"]) / 1000
    fps = (last["frames"] - first["frames"]) / span_s
    worst = min(((b["frames"] - a["frames"]) / ((b["t"] - a["t"]) / 1000)
                 for a, b in zip(good, good[4:])), default=None)  # 2 s windows (samples every 0.5 s)
    relay = statistics.median(relay_skews) if relay_skews else 0.0
    web_audio_skews = pair_marks(marks.get("video", []), marks.get("audio", []))
    # The skew she sees: each medium's send-to-playout latency from the browser's stats (see the module's
    # docstring), plus the relay's own capture-to-send difference, less the voice hold of that moment (the
    # relay sends the voice that much later than its pipeline's figure says; the browser cannot see it).
    lat = stats_latencies(good)
    skews = [relay + x - held for x, held in zip(lat["skew"], lat["hold"])]
    sink_skews = pair_marks(marks.get("video", []), marks.get("sink", []))
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
        "av_marks": {"flashes": len(marks.get("video", [])), "bursts": len(marks.get("audio", [])),
                     "paired": len(web_audio_skews), "paired_sink": len(sink_skews)},
        "av_skew_ms_median": round(statistics.median(skews), 1) if skews else None,
        "av_skew_ms_p90_abs": round(float(np.percentile(np.abs(skews), 90)), 1) if skews else None,
        "av_skew_ms_max_abs": round(max(abs(s) for s in skews), 1) if skews else None,
        "av_skew_ms_samples": len(skews),
        "av_skew_ms_marks_median": round(statistics.median(sink_skews), 1) if sink_skews else None,
        "av_skew_ms_each": [round(x, 1) for x in web_audio_skews],
        "av_skew_ms_each_sink": [round(x, 1) for x in sink_skews],
        "relay_send_skew_ms": round(relay, 1),
        "voice_hold_ms": _spread(lat["hold"]),
        "playout": playout_figures(good, lat, marks),
        "loss_seen_pct": round(100 * lost / max(1, lost + recv), 2),
        "rtt_ms": None if last.get("rtt") is None else round(1000 * last["rtt"], 1),
        "kbps_in": round(8 * ((last.get("vBytes", 0) + last.get("aBytes", 0))
                              - (first.get("vBytes", 0) + first.get("aBytes", 0))) / span_s / 1000, 1),
        "video_target_kbps_median": round(statistics.median(bitrates) / 1000) if bitrates else None,
        "nacks": (last.get("nack") or 0) - (first.get("nack") or 0),
        "plis": (last.get("pli") or 0) - (first.get("pli") or 0),
        "path_drops": dict(impairment.counts),
    }


def playout_figures(good: list[dict], lat: dict, marks: dict) -> dict:
    """Each medium's latency to playout two ways (the browser's stats, `lat` from stats_latencies; the
    marks, timed by the page), the skew each gives, and each medium's jitter buffer."""
    origin, t0 = marks.get("origin", 0.0), marks.get("t0_wall", 0.0)
    video = mark_latencies(marks.get("video", []), origin, t0)
    sink = mark_latencies(marks.get("sink", []), origin, t0)
    web_audio = mark_latencies(marks.get("audio", []), origin, t0)
    return {
        "stats_latency_ms": {"video": _spread(lat["video"]), "audio": _spread(lat["audio"])},
        "stats_skew_ms": _spread(lat["skew"]),
        "mark_latency_ms": {"video_display": _spread(video), "audio_sink": _spread(sink),
                            "audio_web_audio": _spread(web_audio)},
        "jitter_buffer_ms": {"video": jitter_buffer_ms(good[0], good[-1], "v"),
                             "audio": jitter_buffer_ms(good[0], good[-1], "a")},
    }


def _vp8_roundtrip(frames: list[np.ndarray], bitrate: int, fps: int = 30) -> list[np.ndarray]:
    """Frames through libvpx VP8 (realtime, CBR at `bitrate`, as aiortc sets it up) and back."""
    import fractions

    import av

    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt, enc.bit_rate = w, h, "yuv420p", bitrate
    enc.time_base = fractions.Fraction(1, fps)
    enc.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0", "minrate": str(bitrate),
                   "maxrate": str(bitrate), "bufsize": str(bitrate), "undershoot-pct": "100"}
    dec = av.CodecContext.create("libvpx", "r")
    out = []
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        for packet in enc.encode(frame):
            out += [f.to_ndarray(format="bgr24") for f in dec.decode(packet)]
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    ya = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    yb = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(10 * np.log10(255 ** 2 / max(np.mean((ya - yb) ** 2), 1e-9)))


def crop_where(clip: Path, rates=(250_000, 500_000), seconds: float = 4.0) -> dict:
    """Why the relay crops: PSNR of what an upright phone shows, cropped before encoding (relay) or after
    decoding a whole 4:3 picture (page), at the same bitrate, against the uncompressed crop."""
    import av

    from calls.framing import FaceFramer, crop, size_for

    framer = FaceFramer()
    aspect = framer.set_viewport(390, 844)
    size = size_for(aspect, 500_000)
    whole, reference, windows = [], [], []
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= seconds * 30:
                break
            image = frame.to_ndarray(format="bgr24")
            reference.append(framer.frame(image, i / 30, size=size))
            windows.append(framer._window)
            whole.append(image)
    framer.close()
    out = {"picture_sent": {"relay": f"{size[0]}x{size[1]}", "page": f"{whole[0].shape[1]}x{whole[0].shape[0]}"}}
    for rate in rates:
        relay = _vp8_roundtrip(reference, rate)
        page = [crop(img, win, aspect, size) for img, win in zip(_vp8_roundtrip(whole, rate), windows)]
        skip = 15  # the first half second: the rate control settling
        out[f"{rate // 1000}kbps_psnr_db"] = {
            "relay_crop": round(float(np.mean([_psnr(a, b) for a, b in zip(relay[skip:], reference[skip:])])), 2),
            "page_crop": round(float(np.mean([_psnr(a, b) for a, b in zip(page[skip:], reference[skip:])])), 2)}
    return out


SKEW_METHOD = (
    "video - audio latency, capture to playout, ms: the relay's capture-to-send difference (pipeline stats) plus "
    "the browser's send-to-playout difference from getStats (estimatedPlayoutTimestamp of the inbound video "
    "and audio, read in one call), sampled every 0.5 s; cross-checked by flash/burst marks (flash at "
    "requestVideoFrameCallback's expectedDisplayTime, burst where the WebRTC audio sink hands it out, "
    "MediaStreamTrackProcessor): av_skew_ms_marks_median. The Web Audio tap (av_skew_ms_each) adds its own "
    "FIFO (see playout.mark_latency_ms) and is kept for comparison only.")


def compact(run: dict) -> dict:
    """The figures of one run that the issue's targets and the skew's explanation need."""
    keys = ("fps_decoded", "fps_worst_2s", "longest_audio_gap_ms", "av_skew_ms_median", "av_skew_ms_p90_abs",
            "av_skew_ms_max_abs", "av_skew_ms_marks_median", "relay_send_skew_ms",
            "loss_seen_pct", "rtt_ms", "load_average_1min")
    out = {k: run.get(k) for k in keys}
    playout = run.get("playout", {})
    out["jitter_buffer_ms"] = playout.get("jitter_buffer_ms")
    out["voice_hold_ms"] = (run.get("voice_hold_ms") or {}).get("median")
    out["latency_ms_median"] = {k: v["median"] for k, v in playout.get("stats_latency_ms", {}).items()}
    return out


def over_runs(runs: list[dict]) -> dict:
    """Median and range over runs of each run's figures."""
    out = {}
    for key in ("fps_decoded", "longest_audio_gap_ms", "av_skew_ms_median", "av_skew_ms_p90_abs",
                "av_skew_ms_max_abs", "av_skew_ms_marks_median"):
        xs = [r[key] for r in runs if r.get(key) is not None]
        out[key] = {"median": round(statistics.median(xs), 1), "min": min(xs), "max": max(xs)} if xs else None
    out["runs"] = len(runs)
    return out


async def main(out: Path, runs: int = 3, keep_crop: bool = False, filters: bool = False,
               hold: bool = True) -> dict:
    """`runs` impaired runs; `keep_crop` reuses the crop figures already in `out` (they do not depend on the
    path)."""
    from calls.demo import demo_assets
    from engine.persona import load_persona_dir

    home = Path(os.environ.get("EVERCALL_HOME") or tempfile.mkdtemp(prefix="evercall-bench-"))
    os.environ["EVERCALL_HOME"] = str(home)
    demo = demo_assets(home / "demo")
    persona = load_persona_dir(demo.persona_dir, name="demo")
    results = {"profiles": PROFILES, "measure_s": MEASURE_S}
    if keep_crop and out.is_file():
        results["crop_where"] = json.loads(out.read_text())["crop_where"]
    else:
        results["crop_where"] = await asyncio.to_thread(crop_where, demo.operator_clip)
    print("crop_where", json.dumps(results["crop_where"]), flush=True)
    photo = cv2.imread(str(demo.operator_photo))
    results["relay"] = "demo persona filters, swap mode" if filters else "passthrough (the network path alone)"
    results["skew_method"] = SKEW_METHOD
    who = persona if filters else None
    results["voice_hold"] = "relay holds the voice by the lag the page reports (VoiceHold)" if hold else "off"
    results["clean"] = await measure(photo, PROFILES["clean"], persona=who, hold=hold)
    print("clean", json.dumps(results["clean"]), flush=True)
    home_runs = []
    for i in range(runs):
        home_runs.append(await measure(photo, PROFILES["home"], persona=who, hold=hold))
        print(f"home {i}", json.dumps(home_runs[-1]), flush=True)
    results["home"] = home_runs[-1]
    results["home_runs"] = [compact(r) for r in home_runs]
    results["home_over_runs"] = over_runs(home_runs)
    targets = {"fps_decoded": ">= 20", "longest_audio_gap_ms": "<= 200", "av_skew_ms_median": "|x| <= 60",
               "av_skew_ms_p90_abs": "<= 60", "av_skew_ms_max_abs": "<= 60",
               "judged_on": "every impaired run (home_runs)"}
    results["home_meets"] = {
        "fps_decoded": all(r["fps_decoded"] >= 20 for r in home_runs),
        "longest_audio_gap_ms": all(r["longest_audio_gap_ms"] <= 200 for r in home_runs),
        "av_skew_ms_median": all(r["av_skew_ms_median"] is not None and abs(r["av_skew_ms_median"]) <= 60
                                 for r in home_runs),
        "av_skew_ms_p90_abs": all(r["av_skew_ms_p90_abs"] is not None and r["av_skew_ms_p90_abs"] <= 60
                                  for r in home_runs),
        "av_skew_ms_max_abs": all(r["av_skew_ms_max_abs"] is not None and r["av_skew_ms_max_abs"] <= 60
                                  for r in home_runs),
    }
    results["targets"] = targets
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


async def alternate(pairs: int, out: Path) -> list[dict]:
    """`pairs` impaired runs with the voice hold, each followed by one without: the two under the same load
    (others' work on the same cores moves both figures more than anything else)."""
    from calls.demo import demo_assets

    home = Path(os.environ.get("EVERCALL_HOME") or tempfile.mkdtemp(prefix="evercall-bench-"))
    os.environ["EVERCALL_HOME"] = str(home)
    photo = cv2.imread(str(demo_assets(home / "demo").operator_photo))
    runs = []
    for i in range(pairs):
        for hold in ((True, False) if i % 2 == 0 else (False, True)):  # neither always goes first
            run = compact(await measure(photo, PROFILES["home"], hold=hold))
            run["voice_hold"] = hold
            runs.append(run)
            print(json.dumps(run), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"profile": PROFILES["home"], "measure_s": MEASURE_S, "skew_method": SKEW_METHOD,
                               "runs": runs}, indent=2))
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module's docstring for what each figure means."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_network",
                                 description="The far end (Chromium as a phone) over a clean and an impaired "
                                             "path (5% loss, 150 ms round trip, 800 kbit/s): fps, audio gaps, "
                                             "A/V skew. Needs Chromium.")
    ap.add_argument("out", nargs="?", type=Path, help=f"JSON written (default {OUT}, or "
                    "network_alternate.json beside it with --alternate)")
    ap.add_argument("--runs", type=int, default=3, help="impaired runs (default 3)")
    ap.add_argument("--keep-crop", action="store_true",
                    help="reuse the crop figures already in OUT (they do not depend on the path)")
    ap.add_argument("--filters", action="store_true",
                    help="put the demo persona's face swap and voice in (default: a passthrough relay)")
    ap.add_argument("--no-hold", action="store_true", help="keep the relay's voice hold at 0, for comparison")
    ap.add_argument("--alternate", type=int, default=0, metavar="N",
                    help="instead: N pairs of impaired runs, with and without the voice hold")
    return ap.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.alternate:
        asyncio.run(alternate(args.alternate, args.out or OUT.with_name("network_alternate.json")))
    else:
        asyncio.run(main(args.out or OUT, runs=args.runs, keep_crop=args.keep_crop, filters=args.filters,
                         hold=not args.no_hold))
