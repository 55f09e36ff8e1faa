"""Glass-to-glass latency through the real relay, measured by a far-end WebRTC client on loopback.

What is measured. A synthetic operator source plays a 640x480 30 fps picture (the demo operator photo,
gently moving, so the face filter has a real face to work on) with each frame's sequence number drawn as
a barcode in a strip along the bottom, well away from the face; and 48 kHz audio: quiet speech-like
noise with a 10 ms tone burst (a "click") every 500 ms. The source remembers when it produced each
frame and each click. An aiortc client joins the relay's /join/ link with tuned receivers
(calls/transport.py), reads the barcode off every decoded frame and finds the clicks in the decoded
audio, which gives, per frame and per click:
- video latency: capture -> decoded at the far end (no display time);
- audio latency: capture of the click's onset -> the moment that sample is handed out at the far end;
- far-end A/V skew: video latency - audio latency (positive: the picture lags the voice).

Paths, measured one after the other in the same run, through the same CallServer:
- passthrough: identity face, identity voice with latency 0 (the relay's own cost);
- default: the demo persona's filters, built by calls.serve.build_pipeline.
For each path the report subtracts what the filters themselves account for (pipeline.stats(): face
stage latency; voice algorithmic latency plus its processing time per block) to give the latency the
relay adds beyond its filters, and subtracts the engine's own send delay to give the WebRTC leg alone.
The pipeline delays video on purpose (align_av) so that it leaves with the audio: "raw" video latency
includes that hold, and the skew shows whether it worked at the far end.

Relay and client share this process and its event loop (as on a single machine), so the figures are
loopback figures on a busy machine: compare paths measured in one run, not runs on different machines.
Run: `python -m benchmarks.latency [--seconds S] [--full] [--json OUT]`; `--full` adds a passthrough without
A/V hold and one with aiortc's stock receive buffers; `--scaling N` runs 1..N calls at once instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from benchmarks.relay import start_relay
from calls.sources import Source, fit_frame
from engine.media import AudioChunk, VideoFrame, now
from engine.pipeline import CallPipeline
from engine.face_contract import PassthroughFace
from engine.voice_contract import PassthroughVoice

FPS = 30
WIDTH, HEIGHT = 640, 480
RATE = 48000
BLOCK = 480  # 10 ms: the microphone block MicSource asks the sound card for (engine.pipeline.AUDIO_BLOCK)
# The measuring client plays each audio packet as it arrives: a far end's own jitter buffer (a browser
# sizes it to the network it sees) is the far end's delay, not the relay's, and is left out.
CLIENT_AUDIO_PREFETCH = 0
# A click about every 500 ms (latencies must stay under that to be matched). The extra 7 ms moves each
# click to another place in the 10 ms blocks and 20 ms voice hops (20 places in turn), as speech onsets
# fall anywhere: a whole number of blocks would put every click where the same per-block cost lands.
CLICK_EVERY = RATE // 2 + 336
CLICK_AT = RATE // 10  # first click 100 ms into each half second
CLICK_LEN = RATE // 100  # 10 ms tone burst
CLICK_HZ = 1500.0  # inside the voice filter's 16 kHz passband
CLICK_LEVEL = 0.7
CLICK_THRESHOLD = 0.25  # onset: first sample above this after a quiet spell
REFRACTORY = int(0.25 * RATE)
NOISE_RMS = 0.01

# Barcode: 16 cells of 40 x 24 px carry the frame number; the 16 cells under them carry its complement,
# so each bit is read by comparing two cells (no brightness threshold to tune) and a frame whose strip is
# damaged (any bit with too little contrast) is rejected instead of misread.
BITS = 16
STRIP = 48  # px at the bottom of a 480-row frame
MIN_CONTRAST = 40  # luma levels between a cell and its complement

Factory = Callable[[], CallPipeline]


# -- barcode ---------------------------------------------------------------------------------------------
def draw_barcode(image: np.ndarray, seq: int) -> None:
    """Paint `seq` (mod 2**16) into the bottom strip of a BGR image, in place."""
    h, w = image.shape[:2]
    top = h - h * STRIP // HEIGHT
    mid = (top + h) // 2
    for bit in range(BITS):
        x0, x1 = bit * w // BITS, (bit + 1) * w // BITS
        on = (seq >> (BITS - 1 - bit)) & 1
        image[top:mid, x0:x1] = 255 if on else 0
        image[mid:h, x0:x1] = 0 if on else 255


def read_barcode(luma: np.ndarray) -> Optional[int]:
    """The sequence number in the bottom strip of a luma (or BGR) image, or None if it is not legible.

    Only the bottom `STRIP/HEIGHT` of the rows is looked at, scaled to the image size, so a far end that
    receives a rescaled picture still reads it.
    """
    if luma.ndim == 3:
        luma = luma.mean(axis=2)
    h, w = luma.shape[:2]
    top = h - h * STRIP // HEIGHT
    mid = (top + h) // 2
    rows = ((top + (mid - top) // 4, mid - (mid - top) // 4), (mid + (h - mid) // 4, h - (h - mid) // 4))
    value = 0
    for bit in range(BITS):
        x0, x1 = bit * w // BITS, (bit + 1) * w // BITS
        cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        upper = float(luma[rows[0][0]:rows[0][1], cx0:cx1].mean())
        lower = float(luma[rows[1][0]:rows[1][1], cx0:cx1].mean())
        if abs(upper - lower) < MIN_CONTRAST:
            return None
        value = (value << 1) | int(upper > lower)
    return value


def luma_of(frame) -> np.ndarray:
    """The decoded frame's luma as a 2-D array, without a colour conversion (cheap on the event loop)."""
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12", "gray"):
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return rows[:, :frame.width]
    return frame.to_ndarray(format="gray")


# -- audio -----------------------------------------------------------------------------------------------
def click_burst() -> np.ndarray:
    t = np.arange(CLICK_LEN) / RATE
    return (CLICK_LEVEL * np.sin(2 * np.pi * CLICK_HZ * t)).astype(np.float32)


def speechlike_noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Band-limited noise with a 4 Hz syllable envelope: quiet, so the clicks stand out after any filter."""
    from scipy import signal

    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    b, a = signal.butter(2, [200 / (RATE / 2), 3000 / (RATE / 2)], "band")
    noise = signal.lfilter(b, a, rng.normal(0, 1, n))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * np.arange(n) / RATE))
    noise = noise * envelope
    return (NOISE_RMS * noise / (np.std(noise) + 1e-12)).astype(np.float32)


def onsets(samples: np.ndarray, threshold: float = CLICK_THRESHOLD) -> list[int]:
    """Indices where |x| first rises above `threshold` after at least REFRACTORY samples below it."""
    above = np.flatnonzero(np.abs(samples) > threshold)
    found: list[int] = []
    last = -REFRACTORY - 1
    for k in above:
        if k - last > REFRACTORY:
            found.append(int(k))
        last = k
    return found


CLICK_ONSET = onsets(np.concatenate([np.zeros(16, np.float32), click_burst()]))[0] - 16  # detector's own lag


# -- the operator --------------------------------------------------------------------------------------
def operator_frames(photo: np.ndarray, n: int = 2 * FPS) -> list[np.ndarray]:
    """`n` frames of the photo with a slow nod and sway (the face filter tracks a moving face)."""
    base = fit_frame(photo, (WIDTH, HEIGHT))
    frames = []
    for i in range(n):
        phase = 2 * np.pi * i / n
        m = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT * 0.35), 3.0 * np.sin(phase), 1.0 + 0.02 * np.sin(2 * phase))
        m[:, 2] += (8.0 * np.sin(phase), 4.0 * np.cos(phase))
        frames.append(cv2.warpAffine(base, m, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT))
    return frames


class BarcodeSource(Source):
    """A camera and microphone that remember when each frame and click left them."""

    def __init__(self, frames: list[np.ndarray], fps: int = FPS) -> None:
        super().__init__()
        self.frames, self.fps = frames, fps
        self.video_t: dict[int, float] = {}  # frame number -> capture time
        self.click_t: list[float] = []  # capture time of each click's onset sample
        self.click_sample: list[int] = []  # index of each click's onset sample in the stream
        self.camera_skipped = 0  # frames a starved camera thread never produced
        self._background = speechlike_noise(2.0)
        self._burst = click_burst()

    def start(self, on_video, on_audio) -> "BarcodeSource":
        self._spawn(lambda: self._video(on_video), "bench-camera")
        self._spawn(lambda: self._audio(on_audio), "bench-mic")
        return self

    def _video(self, on_video) -> None:
        start = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            wait = start + seq / self.fps - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
            elif wait < -1.5 / self.fps:
                # This thread was starved: a camera does not burst old frames afterwards, it skips them.
                skip = int(-wait * self.fps)
                self.camera_skipped += skip
                seq += skip
            image = self.frames[seq % len(self.frames)].copy()
            draw_barcode(image, seq)
            t = now()
            self.video_t[seq % (1 << BITS)] = t
            on_video(VideoFrame(image, t, seq))
            seq += 1

    def _audio(self, on_audio) -> None:
        start = time.monotonic()
        k = 0
        bg = self._background
        while not self._stop.is_set():
            wait = start + (k + 1) * BLOCK / RATE - time.monotonic()  # a block exists once its last sample does
            if wait > 0:
                self._stop.wait(wait)
            first = k * BLOCK
            idx = np.arange(first, first + BLOCK)
            block = bg[idx % bg.size].copy()
            pos = (idx - CLICK_AT) % CLICK_EVERY
            inside = pos < CLICK_LEN
            block[inside] += self._burst[pos[inside]]
            # The sample clock, as a sound card's: block k was captured at start + k blocks, however late this
            # thread delivers it (stamping on delivery would squeeze a late burst of blocks into one moment).
            t_first = start + k * BLOCK / RATE
            starts = np.flatnonzero(inside & (pos == 0))
            for s in starts:
                self.click_t.append(t_first + (s + CLICK_ONSET) / RATE)
                self.click_sample.append(first + int(s) + CLICK_ONSET)
            on_audio(AudioChunk(block, RATE, t_first, k))
            k += 1


class LoadProbe:
    """How contended the CPU is while a path is measured: wall time over CPU time of a fixed Python task.

    Every 200 ms a helper process burns 10 ms of CPU in pure Python (5% of one core) and notes how much
    wall time that took. On an idle core the ratio is 1; when other processes or the relay's threads hold
    the cores the task is preempted and the ratio grows (3 busy processes on 2 cores: about 3-6). A task
    much shorter than a scheduler slice would not see it. The task runs in its own process so that it
    competes for cores like any neighbour but never for the relay's GIL: run as a thread, its 10 ms bursts
    held up one frame in twenty and made the video's p95 the probe's. Reported with every path, so a slow
    figure can be told apart from a loaded machine.
    """

    SCRIPT = """
import sys, time
every, cpu = float(sys.argv[1]), float(sys.argv[2])
while True:
    time.sleep(every)
    w0, c0 = time.perf_counter(), time.process_time()
    total = 0
    while time.process_time() - c0 < cpu:
        for i in range(2000):
            total += i * i
    print((time.perf_counter() - w0) / (time.process_time() - c0), flush=True)
"""

    def __init__(self, every_s: float = 0.2, cpu_s: float = 0.01) -> None:
        self.ratios: list[float] = []
        self._args = [str(every_s), str(cpu_s)]
        self._proc: Optional[subprocess.Popen] = None

    def start(self) -> "LoadProbe":
        self._proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, *self._args], stdout=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True)
        return self

    def stop(self) -> Optional[float]:
        """Stop and return the median ratio (None if no sample was taken)."""
        if self._proc is not None:
            self._proc.terminate()
            out, _ = self._proc.communicate(timeout=5)
            self.ratios = [float(line) for line in out.split() if line.strip()]
        return round(float(np.median(self.ratios)), 2) if self.ratios else None


# -- pipelines -------------------------------------------------------------------------------------------
class TimedVoice:
    """Wraps a voice filter to measure its processing time per block (for the real-time factor, and to know
    what the block that carried each click out cost)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds: list[float] = []
        self.samples = 0

    @property
    def latency_s(self) -> float:
        return self.inner.latency_s

    def process(self, samples: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.process(samples)
        self.seconds.append(time.perf_counter() - t0)
        self.samples += len(samples)
        return out


def passthrough_pipeline() -> CallPipeline:
    return CallPipeline(PassthroughFace(), PassthroughVoice()).start()


def default_pipeline(persona=None) -> CallPipeline:
    """The demo persona's filters, exactly as `evercall serve --demo` builds them."""
    from calls.assembly import CallAssembly, CallChoices

    return CallAssembly(persona or demo_persona(), CallChoices(mode="swap"), audit=None).pipeline()


def demo_persona():
    from calls.demo import demo_assets
    from engine.persona import load_persona_dir

    return load_persona_dir(demo_assets().persona_dir, name="demo")


def demo_operator_photo() -> np.ndarray:
    from calls.demo import demo_assets

    return cv2.imread(str(demo_assets().operator_photo))


# -- one path ----------------------------------------------------------------------------------------------
@dataclass
class Arrivals:
    video: list[tuple[int, float]] = field(default_factory=list)  # (barcode, decoded at)
    illegible: int = 0
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (handed out at, mono samples)


async def _far_end(url: str, arrivals: Arrivals, first_frame: asyncio.Event):
    """Join like a browser would (recvonly video + audio); return the peer connection and its readers."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from calls.ice import rtc_configuration
    from calls.tracks import frame_to_mono

    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tasks: list[asyncio.Task] = []

    async def pull_video(track) -> None:
        while True:
            frame = await track.recv()
            t = now()
            seq = read_barcode(luma_of(frame))  # bottom strip of the luma plane only: well under 1 ms
            if seq is None:
                arrivals.illegible += 1
            else:
                arrivals.video.append((seq, t))
                first_frame.set()

    async def pull_audio(track) -> None:
        while True:
            frame = await track.recv()
            t = now()
            arrivals.audio.append((t, frame_to_mono(frame)))

    async def guard(coro) -> None:
        try:
            await coro
        except (MediaStreamError, asyncio.CancelledError):
            pass

    @pc.on("track")
    def on_track(track) -> None:
        tasks.append(asyncio.ensure_future(guard(pull_video(track) if track.kind == "video" else pull_audio(track))))

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/offer", json={"sdp": pc.localDescription.sdp,
                                                      "type": pc.localDescription.type}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"relay refused the benchmark client: {resp.status} {await resp.text()}")
            answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    return pc, tasks


async def hang_up(tasks: list[asyncio.Task], pc, source: Source, runner, pipeline: CallPipeline) -> None:
    """End a measured call: the far end's readers and connection, then the source, server and pipeline."""
    for task in tasks:
        task.cancel()
    if pc is not None:
        await pc.close()
    source.stop()
    await runner.cleanup()
    pipeline.close()


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {"n": int(a.size), "p50": round(float(np.percentile(a, 50)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "max": round(float(a.max()), 1)}


def _sub(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else round(a - b, 1)


def _video_latencies(arrivals: Arrivals, source: BarcodeSource, t0: float, t1: float) -> tuple[list[float], int]:
    """Latency (ms) of each frame captured in [t0, t1] and how many distinct frames arrived from it."""
    seen: set[int] = set()
    lat = []
    for seq, t in arrivals.video:
        tc = source.video_t.get(seq)
        if tc is None or not t0 <= tc <= t1 or seq in seen:
            continue  # a repeat (the relay resends the last frame when the source stalls) counts once
        seen.add(seq)
        lat.append((t - tc) * 1000)
    return lat, len(seen)


def _heard_clicks(arrivals: Arrivals, source: BarcodeSource, t0: float, t1: float) -> tuple[dict[int, float], int]:
    """{click index: when its onset was heard} for clicks captured in [t0, t1], and how many there were."""
    if not arrivals.audio:
        return {}, 0
    times = np.array([t for t, _ in arrivals.audio])
    sizes = np.array([len(s) for _, s in arrivals.audio])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    samples = np.concatenate([s for _, s in arrivals.audio])
    clicks = np.array(source.click_t)
    wanted = (clicks >= t0) & (clicks <= t1)
    heard: dict[int, float] = {}
    for g in onsets(samples):
        f = int(np.searchsorted(starts, g, side="right") - 1)
        ear = times[f] + (g - starts[f]) / RATE  # the sample plays that long after its packet's first one
        j = int(np.searchsorted(clicks, ear, side="right") - 1)
        if j < 0 or not wanted[j] or j in heard:
            continue
        if 0 <= ear - clicks[j] < (CLICK_EVERY / RATE) - 0.02:
            heard[j] = float(ear)
    return heard, int(wanted.sum())


def _carrying_block_ms(timed: "TimedVoice", click_sample: int) -> float:
    """Processing time (ms) of the voice block whose output held the sample captured at `click_sample`.

    The pipeline converts the stream in AUDIO_BLOCK blocks from its first sample on, and output sample n is
    the conversion of input sample n - delay, so the block is known from the sample index alone.
    """
    from engine.pipeline import AUDIO_BLOCK

    block = (click_sample + int(round(timed.latency_s * RATE))) // AUDIO_BLOCK
    if 0 <= block < len(timed.seconds):
        return timed.seconds[block] * 1000
    return float(np.median(timed.seconds)) * 1000 if timed.seconds else 0.0


def _left_engine(sends: list[tuple[float, float]], t_capture: float) -> Optional[float]:
    """When the audio sample captured at `t_capture` was handed to WebRTC (from the blocks' send log)."""
    for t_first, sent in sends:
        if t_first <= t_capture < t_first + BLOCK / RATE:
            return sent + (t_capture - t_first)
    return None


class SendLog:
    """When the relay's tracks hand each frame and audio block to WebRTC (wraps the pipeline's callbacks).

    CallServer passes `pipeline.note_video_sent`/`note_audio_sent` to the tracks it creates for an offer,
    so wrapping them on the pipeline before the far end joins tells, per frame, how long the engine held
    it (face filter + A/V hold) and how long WebRTC took after that (encode, send, receive, decode).
    """

    def __init__(self, pipeline: CallPipeline) -> None:
        self.video: dict[float, float] = {}  # capture time -> handed to the video track
        self.audio: list[tuple[float, float]] = []  # (capture time of the block's first sample, handed over)
        video_sent, audio_sent = pipeline.note_video_sent, pipeline.note_audio_sent

        def note_video(t_capture: float) -> None:
            self.video[t_capture] = now()
            video_sent(t_capture)

        def note_audio(t_capture: Optional[float]) -> None:
            if t_capture is not None:
                self.audio.append((t_capture, now()))
            audio_sent(t_capture)

        pipeline.note_video_sent = note_video  # type: ignore[method-assign]
        pipeline.note_audio_sent = note_audio  # type: ignore[method-assign]


async def measure_path(name: str, factory: Factory, seconds: float, warmup: float = 1.5,
                       photo: Optional[np.ndarray] = None, tuned: bool = True,
                       connect_timeout: float = 20.0, media=None) -> dict:
    """Start a relay on `factory()`'s pipeline, join it, measure `seconds` after `warmup`, tear down."""
    from calls.transport import receivers_tuned

    pipeline = await asyncio.to_thread(factory)
    timed = TimedVoice(pipeline.voice)
    pipeline.voice = timed  # the voice thread reads this attribute for every block
    sends = SendLog(pipeline)
    source = BarcodeSource(operator_frames(photo if photo is not None else demo_operator_photo()))
    _, runner, url = await start_relay(pipeline, source, media)
    arrivals = Arrivals()
    first = asyncio.Event()
    pc = None
    tasks: list[asyncio.Task] = []
    try:
        joined = now()
        with receivers_tuned(audio_prefetch=CLIENT_AUDIO_PREFETCH) if tuned else _stock_receivers():
            pc, tasks = await _far_end(url, arrivals, first)
        await asyncio.wait_for(first.wait(), connect_timeout)
        first_frame_s = now() - joined
        await asyncio.sleep(warmup)
        probe = LoadProbe().start()
        proc_before, samples_before = len(timed.seconds), timed.samples
        t0 = now()
        await asyncio.sleep(seconds)
        t1 = now()
        contention = probe.stop()
        await asyncio.sleep(0.6)  # let the window's last frames and clicks arrive
        stats = pipeline.stats()
    finally:
        await hang_up(tasks, pc, source, runner, pipeline)
    return summarize(name, tuned, stats, source, arrivals, sends, timed, t0, t1,
                     first_frame_s=first_frame_s, contention=contention,
                     voice_from=(proc_before, samples_before))


def summarize(name: str, tuned: bool, stats: dict, source: BarcodeSource, arrivals: Arrivals, sends: SendLog,
              timed: TimedVoice, t0: float, t1: float, first_frame_s: float, contention: Optional[float],
              voice_from: tuple[int, int] = (0, 0)) -> dict:
    """Turn one path's raw timings into the report (all figures in ms unless named otherwise)."""
    video_end = t1 - 0.3  # frames captured later may still be in flight when we stop listening
    video, distinct = _video_latencies(arrivals, source, t0, video_end)
    heard, clicks_sent = _heard_clicks(arrivals, source, t0, t1 - 0.5)
    audio = [(ear - source.click_t[j]) * 1000 for j, ear in heard.items()]
    # Per click: capture -> left the engine (voice filter + buffering) and -> heard (WebRTC leg).
    engine_click, transport_click = [], []
    for j, ear in heard.items():
        left = _left_engine(sends.audio, source.click_t[j])
        if left is not None:
            engine_click.append((left - source.click_t[j]) * 1000)
            transport_click.append((ear - left) * 1000)
    captured = sum(1 for tc in source.video_t.values() if t0 <= tc <= video_end)
    window = video_end - t0

    # Per frame: engine part (capture -> handed to WebRTC) and transport part (-> decoded at the far end).
    by_seq = dict(arrivals.video[::-1])  # first arrival of each barcode wins
    engine_v, transport_v = [], []
    for seq, t_dec in by_seq.items():
        tc = source.video_t.get(seq)
        sent = sends.video.get(tc) if tc is not None else None
        if sent is not None and t0 <= tc <= video_end:
            engine_v.append((sent - tc) * 1000)
            transport_v.append((t_dec - sent) * 1000)
    engine_a = [(sent - tc) * 1000 for tc, sent in sends.audio if t0 <= tc <= t1]

    v, a = _pct(video), _pct(audio)
    face = stats.get("face", {})
    voice_alg = stats["audio"]["voice_latency_ms"]
    proc = np.asarray(timed.seconds[voice_from[0]:]) * 1000
    samples = timed.samples - voice_from[1]
    voice_rtf = round(float(proc.sum() / 1000 / (samples / RATE)), 4) if samples else None
    # The voice filter's own time for each click: its algorithmic delay plus the processing time of the
    # block that carried the click's onset out (a block that ran a whole hop costs more than one that only
    # drained the output queue; a median over all blocks would charge either kind to the relay).
    own_click = {j: voice_alg + _carrying_block_ms(timed, source.click_sample[j]) for j in heard}
    voice_proc_p50 = round(float(np.median([own - voice_alg for own in own_click.values()])), 2) if own_click \
        else (round(float(np.median(proc)), 2) if proc.size else 0.0)
    voice_own = round(voice_alg + voice_proc_p50, 1)
    added_audio = _pct([(ear - source.click_t[j]) * 1000 - own_click[j] for j, ear in heard.items()])
    ev, tv, ea = _pct(engine_v), _pct(transport_v), _pct(engine_a)
    ec, tc_ = _pct(engine_click), _pct(transport_click)
    return {
        "path": name,
        "receivers": "tuned (calls/transport.py)" if tuned else "aiortc stock",
        "window_s": round(window, 2),
        "first_frame_s": round(first_frame_s, 2),  # offer sent -> first legible frame decoded
        "cpu_contention": contention,  # LoadProbe: 1.0 = idle cores; 2.0 = work takes twice its CPU time
        "video": {
            "latency_ms": v,  # capture -> decoded at the far end, A/V hold included
            "frames_captured": captured,
            "frames_received": distinct,
            "illegible_frames": arrivals.illegible,
            "camera_skipped": source.camera_skipped,  # whole run: frames a starved camera thread skipped
            "camera_fps": round(captured / window, 2),
            "received_fps": round(distinct / window, 2),
            "fps_ratio": round(distinct / captured, 3) if captured else None,
        },
        "audio": {"latency_ms": a, "clicks_sent": clicks_sent, "clicks_heard": len(audio)},
        "av_skew_ms": {
            "far_end_p50": _sub(v["p50"], a["p50"]),  # positive: the picture lags the voice
            "engine": stats["av"]["skew_ms"],  # what the pipeline measured where media leaves it
        },
        "filters_ms": {
            "face_p50": face.get("p50_ms"), "face_p95": face.get("p95_ms"),
            "voice_algorithmic": voice_alg, "voice_processing_p50": voice_proc_p50,
            "voice_own": voice_own, "voice_rtf": voice_rtf,
        },
        "stages_ms": {  # p50s along the way: where the time goes
            "video_face": face.get("p50_ms"),
            "video_av_hold": _sub(ev["p50"], face.get("p50_ms")),
            "video_engine": ev["p50"], "video_engine_p95": ev["p95"],
            "video_transport": tv["p50"], "video_transport_p95": tv["p95"],
            "audio_voice": voice_own,
            # audio engine: capture -> handed to WebRTC, per click (per 10 ms block when no click was heard)
            "audio_engine": ec["p50"] if ec["p50"] is not None else ea["p50"],
            "audio_engine_blocks_p95": ea["p95"],
            "audio_buffering": _sub(ec["p50"] if ec["p50"] is not None else ea["p50"], voice_own),
            "audio_transport": tc_["p50"] if tc_["p50"] is not None else _sub(a["p50"], ea["p50"]),
        },
        "added_beyond_filters_ms": {
            "video_p50": _sub(v["p50"], face.get("p50_ms")),
            "video_p95": _sub(v["p95"], face.get("p95_ms")),
            "audio_p50": added_audio["p50"],  # per click: heard - captured - that click's voice filter time
            "audio_p95": added_audio["p95"],
        },
        "samples_ms": {"video": [round(x, 1) for x in video], "audio": [round(x, 1) for x in audio]},
        "pipeline_stats": stats,
    }


@contextlib.contextmanager
def _stock_receivers() -> Iterator[None]:
    """aiortc's own jitter buffers while a client is built (for comparison), then what was there."""
    from calls.transport import current_tuning, restore_receivers, tune_receivers

    before = current_tuning()
    restore_receivers()
    try:
        yield
    finally:
        if before is not None:
            tune_receivers(before.video_release_on_marker, before.audio_prefetch)


# -- several paths ----------------------------------------------------------------------------------------
def standard_paths(full: bool = False) -> dict[str, tuple]:
    """name -> (pipeline factory, tuned receivers[, MediaOptions]): passthrough and default, plus comparisons
    in full runs (no A/V hold, aiortc's stock receive buffers, 20 ms Opus packets)."""
    persona_box: list = []

    def default() -> CallPipeline:
        if not persona_box:
            persona_box.append(demo_persona())
        return default_pipeline(persona_box[0])

    paths: dict[str, tuple] = {
        "passthrough": (passthrough_pipeline, True),
        "default": (default, True),
    }
    if full:
        paths["passthrough_no_align"] = (lambda: CallPipeline(PassthroughFace(), PassthroughVoice(), align_av=False).start(),
                                         True)
        paths["passthrough_stock_receivers"] = (passthrough_pipeline, False)
        paths["passthrough_opus_20ms"] = (passthrough_pipeline, True, _media(audio_frame_ms=20))
    return paths


def _media(**options):
    from calls.media_options import MediaOptions

    return MediaOptions(**options)


async def measure(paths: dict[str, tuple], seconds: float, warmup: float = 1.5) -> dict:
    """Measure each path in turn in this event loop; returns {"paths": {...}, "settings": {...}}."""
    photo = await asyncio.to_thread(demo_operator_photo)
    started = time.perf_counter()
    results = {}
    for name, (factory, tuned, *media) in paths.items():
        results[name] = await measure_path(name, factory, seconds, warmup, photo=photo, tuned=tuned,
                                           media=media[0] if media else None)
    return {
        "paths": results,
        "settings": {"seconds_per_path": seconds, "warmup_s": warmup, "fps": FPS, "size": [WIDTH, HEIGHT],
                     "audio_rate": RATE, "click_every_ms": 1000 * CLICK_EVERY / RATE,
                     "frame_interval_ms": round(1000 / FPS, 2)},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def run(quick: bool = True, seconds: Optional[float] = None) -> dict:
    """Passthrough and default (plus comparisons when not quick), measured in one run."""
    secs = seconds if seconds is not None else (6.0 if quick else 20.0)
    return asyncio.run(measure(standard_paths(full=not quick), secs))


# -- many calls at once --------------------------------------------------------------------------------
def _one_call_in_subprocess(kind: str, seconds: float, ready: Path, go: Path, out: Path) -> None:
    """Body of a child process: build one call, wait for the others, measure, write JSON."""
    async def main() -> dict:
        factory = passthrough_pipeline if kind == "passthrough" else standard_paths()["default"][0]
        ready.touch()
        while not go.exists():
            await asyncio.sleep(0.05)
        return await measure_path(kind, factory, seconds, warmup=1.5)
    result = asyncio.run(main())
    result.pop("samples_ms", None)
    out.write_text(json.dumps(result))


def scaling(max_calls: int, kind: str = "default", seconds: float = 8.0, timeout: float = 240.0) -> list[dict]:
    """Run 1..max_calls calls of `kind` at once, one process each (as `evercall serve` runs one call).

    The processes start together, build their filters, then all begin their calls when every one is
    ready, so their measurement windows overlap. Returns one summary per call count.
    """
    rows = []
    for n in range(1, max_calls + 1):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            go = folder / "go"
            procs = []
            for i in range(n):
                cmd = [sys.executable, "-m", "benchmarks.latency", "--child", kind, "--seconds", str(seconds),
                       "--ready", str(folder / f"ready{i}"), "--go", str(go), "--json", str(folder / f"out{i}.json")]
                with open(folder / f"err{i}.txt", "wb") as err:
                    procs.append(subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1],
                                                  stdout=subprocess.DEVNULL, stderr=err))
            deadline = time.monotonic() + timeout
            while not all((folder / f"ready{i}").exists() for i in range(n)):
                if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                    break
                time.sleep(0.1)
            go.touch()
            for p in procs:
                try:
                    p.wait(max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
            calls, errors = [], []
            for i in range(n):
                path = folder / f"out{i}.json"
                if path.exists():
                    calls.append(json.loads(path.read_text()))
                else:
                    tail = (folder / f"err{i}.txt").read_text(errors="replace").strip().splitlines()[-1:]
                    errors.append(tail[0] if tail else f"call {i} ended without a result")
        fps = [c["video"]["received_fps"] for c in calls]
        rows.append({
            "calls": n,
            "kind": kind,
            "completed": len(calls),
            "errors": errors,
            "cpu_contention_max": max((c["cpu_contention"] or 0) for c in calls) if calls else None,
            "received_fps_min": min(fps) if fps else None,
            "received_fps_mean": round(float(np.mean(fps)), 2) if fps else None,
            "fps_ratio_min": min((c["video"]["fps_ratio"] or 0) for c in calls) if calls else None,
            "video_p50_ms_max": max((c["video"]["latency_ms"]["p50"] or 0) for c in calls) if calls else None,
            "video_p95_ms_max": max((c["video"]["latency_ms"]["p95"] or 0) for c in calls) if calls else None,
            "audio_p50_ms_max": max((c["audio"]["latency_ms"]["p50"] or 0) for c in calls) if calls else None,
            "face_p95_ms_max": max((c["filters_ms"]["face_p95"] or 0) for c in calls) if calls else None,
            "voice_rtf_max": max((c["filters_ms"]["voice_rtf"] or 0) for c in calls) if calls else None,
        })
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per path (default 6 quick, 20 full)")
    parser.add_argument("--full", action="store_true", help="also measure passthrough without A/V alignment and "
                                                            "with aiortc's stock receive buffers")
    parser.add_argument("--scaling", type=int, default=0, metavar="N", help="run 1..N concurrent calls instead")
    parser.add_argument("--kind", default="default", choices=["default", "passthrough"], help="calls for --scaling")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ready", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--go", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _one_call_in_subprocess(args.child, args.seconds or 8.0, Path(args.ready), Path(args.go), Path(args.json))
        return 0
    if args.scaling:
        result: object = scaling(args.scaling, args.kind, args.seconds or 8.0)
    else:
        result = run(quick=not args.full, seconds=args.seconds)
        for path in result["paths"].values():  # type: ignore[index]
            path.pop("pipeline_stats", None)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
