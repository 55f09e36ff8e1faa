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
- A/V skew at playout, (video - audio) latency from capture to the far end's screen and sound: the operator
  source (`MarkSource`, face swap mode) is the operator photo with a white flash every 2 s and, at the same capture instant,
  a loud voiced burst after silence; the page (a script put in over DevTools) notes when each flash is
  presented (requestVideoFrameCallback's expectedDisplayTime) and when each burst reaches Web Audio, on the
  same clock. The persona filters run as in a call, so the relay's own A/V hold is part of the figure.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

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
  (await pc.getStats()).forEach((s) => {
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
  const marks = { video: [], audio: [] };
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


async def _until(page, expression: str, timeout: float) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {expression[:80]}")


async def _relay(pipeline, source: Source, media: MediaOptions):
    """The real CallServer on a free loopback port around `pipeline`: (state, runner, far-end link)."""
    from benchmarks.relay import serve_on_loopback
    from calls.server import CallConfig, CallState

    state = CallState(pipeline=pipeline, config=CallConfig(persona_name="benchmark", media=media))
    runner, base = await serve_on_loopback(state)
    source.start(pipeline.push_video, pipeline.push_audio)
    return state, runner, f"{base}/join/{state.invite.token}"


async def measure(photo: np.ndarray, profile: dict, seconds: float = MEASURE_S, persona=None) -> dict:
    """One call over one impaired path; the far end's figures over `seconds`.

    persona None: a passthrough relay (the network path alone, as bench's "passthrough relay" column);
    else that persona's filters in swap mode, exactly as `evercall serve` builds them."""
    from benchmarks.latency import default_pipeline, passthrough_pipeline
    from benchmarks.browser import PHONE_UPRIGHT, devtools_page

    impairment = Impairment(**profile)
    media = MediaOptions(audio_fec_pct=5)
    source = MarkSource(photo)
    with impaired_paths(impairment):
        pipeline = await asyncio.to_thread(passthrough_pipeline if persona is None else default_pipeline, *(
            () if persona is None else (persona,)))
        state, runner, url = await _relay(pipeline, source, media)
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
                    samples.append(await page.evaluate(STATS_JS))
                    skew = state.pipeline.stats()["av"]["skew_ms"]
                    if skew is not None:
                        relay_skews.append(skew)
                    if state.peer is not None and (b := video_bitrate(state.peer)) is not None:
                        bitrates.append(b)
                    await asyncio.sleep(0.5)
                marks = await page.evaluate("window.benchMarks")
        finally:
            source.stop()
            await runner.cleanup()
            pipeline.close()
    result = summarise(samples, relay_skews, bitrates, impairment, marks)
    result["load_average_1min"] = round(__import__("os").getloadavg()[0], 1)  # others' work on the same cores
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
    skews = pair_marks(marks.get("video", []), marks.get("audio", []))
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
        "av_marks": {"flashes": len(marks.get("video", [])), "bursts": len(marks.get("audio", [])), "paired": len(skews)},
        "av_skew_ms_median": round(statistics.median(skews), 1) if skews else None,
        "av_skew_ms_max_abs": round(max(abs(s) for s in skews), 1) if skews else None,
        "av_skew_ms_each": [round(x, 1) for x in skews],
        "av_skew_ms_each_sink": [round(x, 1) for x in sink_skews],
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


async def main(out: Path) -> dict:
    import os

    from calls.demo import demo_assets
    from engine.persona import load_persona_dir

    home = Path(os.environ.get("EVERCALL_HOME") or tempfile.mkdtemp(prefix="evercall-bench-"))
    os.environ["EVERCALL_HOME"] = str(home)
    demo = demo_assets(home / "demo")
    persona = load_persona_dir(demo.persona_dir, name="demo")
    results = {"profiles": PROFILES, "measure_s": MEASURE_S}
    results["crop_where"] = await asyncio.to_thread(crop_where, demo.operator_clip)
    print("crop_where", json.dumps(results["crop_where"]), flush=True)
    photo = cv2.imread(str(demo.operator_photo))
    filters = "--filters" in sys.argv
    results["relay"] = "demo persona filters, swap mode" if filters else "passthrough (the network path alone)"
    for name, profile in PROFILES.items():
        results[name] = await measure(photo, profile, persona=persona if filters else None)
        print(name, json.dumps(results[name]), flush=True)
    targets = {"fps_decoded": ">= 20", "longest_audio_gap_ms": "<= 200", "av_skew_ms_median": "|x| <= 60",
               "av_skew_ms_max_abs": "<= 60"}
    home_run = results["home"]
    results["home_meets"] = {
        "fps_decoded": home_run["fps_decoded"] >= 20,
        "longest_audio_gap_ms": home_run["longest_audio_gap_ms"] <= 200,
        "av_skew_ms_median": home_run["av_skew_ms_median"] is not None and abs(home_run["av_skew_ms_median"]) <= 60,
        "av_skew_ms_max_abs": home_run["av_skew_ms_max_abs"] is not None and home_run["av_skew_ms_max_abs"] <= 60,
    }
    results["targets"] = targets
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(Path(paths[0]) if paths else OUT))
