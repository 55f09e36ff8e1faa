"""The far end's network: how good her path is, what the encoder may send over it, and an impaired path.

Three small jobs, each needed because a grandmother's home Wi-Fi or 4G is not the operator's LAN:
- `link_figures(report)`: the far-end page's own stats (loss, round trip, frames a second, kbit/s) turned
  into a few figures and one verdict, "her connection is weak", for the operator page;
- `video_bitrate(pc)`: the bitrate aiortc's video encoder is aiming at now (receiver reports move it), so
  the framing can send fewer pixels on a thin path instead of a picture that freezes;
- `PathFollower`: caps that bitrate by the far end's reported loss (aiortc itself follows only REMB);
- `VoiceHold`: how long the relay holds her voice back so that it does not run ahead of a picture that
  waits for retransmissions on a lossy path (the page reports the lag, PersonaAudioTrack applies the hold
  in the pauses `PauseFinder` finds, relative to the operator's own voice and room);
- `Impairment` / `impaired_paths()`: loss, delay, a rate limit and outages applied in user space to every
  UDP datagram aioice sends or receives (this machine's kernel has no `netem`). Tests and the benchmark
  put the relay's side of a call behind it; a browser far end then sees a real lossy, slow path.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import aioice.ice
import numpy as np

# What makes a link "weak" for a video call (any one of them): a picture that stutters or freezes, voice
# that is being patched up, or a delay that makes conversation awkward.
WEAK_LOSS_PCT = 3.0
WEAK_RTT_MS = 400.0
WEAK_FPS = 15.0
WEAK_KBPS = 250.0


def _num(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def link_figures(report: Optional[dict]) -> Optional[dict]:
    """The far end's path in a few figures and a verdict, from the page's latest report (None: no report).

    The page reports `network` = {lossPct, rttMs, kbpsIn, fps, reconnects} (see calls/static/join.js).
    """
    if not isinstance(report, dict) or not isinstance(report.get("network"), dict):
        return None
    net = report["network"]
    loss, rtt, kbps, fps = (_num(net.get(k)) for k in ("lossPct", "rttMs", "kbpsIn", "fps"))
    reasons = []
    if loss is not None and loss >= WEAK_LOSS_PCT:
        reasons.append(f"{loss:.1f}% of packets lost")
    if rtt is not None and rtt >= WEAK_RTT_MS:
        reasons.append(f"{rtt:.0f} ms round trip")
    if fps is not None and fps < WEAK_FPS and report.get("connectionState") == "connected":
        reasons.append(f"{fps:.0f} frames a second")
    if kbps is not None and kbps < WEAK_KBPS and report.get("connectionState") == "connected":
        reasons.append(f"{kbps:.0f} kbit/s")
    if report.get("connectionState") not in (None, "connected"):
        reasons.append(f"connection {report.get('connectionState')}")
    return {"weak": bool(reasons), "why": ", ".join(reasons), "loss_pct": loss, "rtt_ms": rtt,
            "kbps_in": kbps, "fps": fps, "reconnects": _num(net.get("reconnects"))}


def video_bitrate(pc: Any) -> Optional[int]:
    """The video encoder's current target bitrate (bit/s) on peer connection `pc`, or None before it exists.

    aiortc keeps the encoder private to the sender and moves its `target_bitrate` on each REMB the far end
    sends; reading it is the only way to know what the path allows. Any change in aiortc gives None.
    """
    encoder = getattr(_video_sender(pc), "_RTCRtpSender__encoder", None)
    bitrate = getattr(encoder, "target_bitrate", None)
    return int(bitrate) if isinstance(bitrate, (int, float)) else None


def _video_sender(pc: Any) -> Any:
    for sender in getattr(pc, "getSenders", lambda: [])():
        track = getattr(sender, "track", None)
        if track is not None and track.kind == "video":
            return sender
    return None


class PathFollower:
    """Holds the video bitrate under what the far end's path carries, judged by her loss reports.

    aiortc moves its encoder's bitrate only on REMB, the far end's delay-based estimate. A home router or a
    4G cell that drops packets when its queue is full rather than delaying them more never moves that
    estimate: the relay keeps sending above the bottleneck and the picture freezes. This is the loss-based
    half of Google's congestion control, on the RTCP receiver reports aiortc already keeps: over
    `high_loss` the cap drops in proportion to the loss, under `low_loss` it climbs `climb` per step
    (towards no cap), in between it holds. Steps are at least `min_step_s` apart, since each bitrate
    change makes aiortc restart its encoder (a keyframe).
    """

    def __init__(self, pc: Any, interval_s: float = 0.5, high_loss: float = 0.10, low_loss: float = 0.02,
                 climb: float = 1.1, min_step_s: float = 2.0, floor_bps: int = 120_000,
                 window_packets: int = 300) -> None:
        self.pc = pc
        self.interval_s, self.high_loss, self.low_loss = interval_s, high_loss, low_loss
        self.climb, self.min_step_s, self.floor_bps = climb, min_step_s, floor_bps
        # Loss is judged over at least this many packets: at 5% random loss, 100 packets show over 10% one
        # time in a hundred (a step down every few minutes for nothing); 300 packets, one in ten thousand.
        self.window_packets = window_packets
        self.cap_bps: Optional[int] = None
        self.loss: Optional[float] = None
        self._last_step = float("-inf")

    def step(self, encoder: Any, loss: float, now: float) -> Optional[int]:
        """Apply one loss report (0..1) to `encoder` (which has `cap_to`); the cap now in force."""
        self.loss = loss
        if now - self._last_step < self.min_step_s:
            return self.cap_bps
        rate = encoder.target_bitrate
        if loss > self.high_loss:
            self.cap_bps = max(self.floor_bps, int(rate * (1 - 0.5 * loss)))
        elif loss < self.low_loss and self.cap_bps is not None:
            self.cap_bps = int(self.cap_bps * self.climb)
            if self.cap_bps >= getattr(encoder, "max_bps", self.cap_bps + 1):
                self.cap_bps = None
        else:
            return self.cap_bps
        self._last_step = now
        encoder.cap_to(self.cap_bps)
        return self.cap_bps

    async def run(self) -> None:
        """Follow the path until the connection closes (cancel the task to stop sooner).

        Loss is counted over each step's whole interval (the reports' cumulative counts, `window_packets` at
        least), not taken from one report's fraction: on a Wi-Fi link with 5% random loss, one second of
        video often shows over 10%, and the rate would ratchet down to the floor for nothing."""
        loop = asyncio.get_running_loop()
        counted: Optional[tuple[int, int]] = None  # (lost, received) when the last step was taken
        while getattr(self.pc, "connectionState", "closed") != "closed":
            await asyncio.sleep(self.interval_s)
            sender = _video_sender(self.pc)
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            if encoder is None or not hasattr(encoder, "cap_to"):
                continue  # no frame sent yet, or aiortc's own encoder (send tuning withdrawn)
            for stats in (await sender.getStats()).values():
                if stats.type != "remote-inbound-rtp":
                    continue
                now = (int(stats.packetsLost or 0), int(stats.packetsReceived or 0))
                if counted is None or now[1] < counted[1]:
                    counted = now
                    continue
                lost, received = now[0] - counted[0], now[1] - counted[1]
                if lost + received >= self.window_packets and loop.time() - self._last_step >= self.min_step_s:
                    self.step(encoder, max(0, lost) / (max(0, lost) + received), loop.time())
                    counted = now


HOLD_MAX_MS = 150.0  # the most the voice is held back for the picture (0: the hold is off)


class VoiceHold:
    """How many milliseconds the relay holds the voice back, following the lag the far end's browser reports.

    Why: on a lossy path the browser's picture waits for retransmitted packets (a round trip each) and the
    voice does not (Opus FEC, concealment). Chromium's own lip sync (audio and video are one MediaStream in
    the answer, and aiortc's sender reports map both to one wall clock) should hold the voice back to match,
    but under loss it leaves the picture 70-100 ms behind (measured: bench_network; where its estimate goes
    wrong is inside Chromium, out of our reach). Holding the voice in the browser was tried and withdrawn:
    it sets the same buffer Chromium's sync steers, and the two fought.

    The relay's hold is out of the browser's sight: the sender reports map the voice to the moment it leaves,
    so Chromium sees a voice sent `held` ms later and its sync is unchanged, while what she hears moves
    `held` ms later against the picture. The lag the page reports (its picture's playout position behind its
    voice's, both on the relay's send clock) does not depend on the hold, so the hold simply follows it: the
    median of the last `window` reports, bounded to 0..`max_ms`, moved at most `step_ms` at a time and at
    most once every `every_s`, ignored within `deadband_ms` of where it is. A clean path reports no lag
    (or the voice behind), and the hold goes back to 0: only a lossy path costs her that much voice delay.
    """

    def __init__(self, max_ms: float = HOLD_MAX_MS, step_ms: float = 20.0, every_s: float = 1.0,
                 deadband_ms: float = 15.0, window: int = 5, min_reports: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_ms, self.step_ms, self.every_s, self.deadband_ms = max_ms, step_ms, every_s, deadband_ms
        self.min_reports = min_reports
        self._lags: deque[float] = deque(maxlen=window)
        self._clock = clock
        self._last_move = float("-inf")
        self.target_ms = 0.0  # where the hold is heading now (moves slowly)
        self.applied_ms = 0.0  # what the audio track holds now (it changes only in quiet moments)

    def report(self, lag_ms: Optional[float]) -> float:
        """One report of the picture's lag behind the voice at her end (ms; None: not known); the target."""
        if lag_ms is None or lag_ms != lag_ms or abs(lag_ms) > 10_000:  # missing, NaN, or nonsense
            return self.target_ms
        self._lags.append(float(lag_ms))
        now = self._clock()
        if len(self._lags) < self.min_reports or now - self._last_move < self.every_s:
            return self.target_ms
        goal = min(self.max_ms, max(0.0, statistics.median(self._lags)))
        if abs(goal - self.target_ms) >= self.deadband_ms or goal in (0.0, self.max_ms):  # bounds: all the way
            move = max(-self.step_ms, min(self.step_ms, goal - self.target_ms))
            self.target_ms = min(self.max_ms, max(0.0, self.target_ms + move))
            self._last_move = now
        return self.target_ms

    def frames(self, frame_s: float) -> int:
        """The target as a whole number of audio frames of `frame_s` seconds."""
        return int(round(self.target_ms / (1000 * frame_s)))

    def figures(self) -> dict:
        """For the operator page and the benchmark."""
        lag = statistics.median(self._lags) if self._lags else None
        return {"hold_ms": round(self.applied_ms, 1), "target_ms": round(self.target_ms, 1),
                "lag_reported_ms": None if lag is None else round(lag, 1)}


class PauseFinder:
    """Tells a pause between words from speech, frame by frame, for the voice hold (which may grow or
    shrink only in a pause), relative to the voice and the room it has heard.

    A fixed level cannot serve both ends: a quiet operator (a soft voice, a far microphone: speech at
    -45 dBFS) is all "pause" under -40 dBFS, so the hold would cut into words; a noisy room (a fan at
    -35 dBFS) is all "speech", so the hold would never move. So two levels are followed: the room's, the
    10th percentile of the frame levels of the last `window_s` (the quietest moments), and the voice's,
    a running mean (time constant `tau_s`) of the frames clearly above the room (`voiced_db` or more).
    A frame is a pause below the middle of the two (in dB), but always `margin_db` below the voice and
    never below `floor_db`. It starts from a normal call level (voice -20 dBFS, room -60: -40 dBFS).
    """

    def __init__(self, frame_s: float, voice_db: float = -20.0, room_db: float = -60.0, window_s: float = 2.0,
                 tau_s: float = 1.5, voiced_db: float = 12.0, margin_db: float = 6.0, floor_db: float = -70.0) -> None:
        self.voice_db = voice_db
        self.voiced_db, self.margin_db, self.floor_db = voiced_db, margin_db, floor_db
        # A ring of the last window's frame levels; np.partition finds its 10th percentile in about a
        # microsecond (np.percentile over a deque cost ~70 us a frame on the event loop).
        self._levels = np.zeros(max(1, round(window_s / frame_s)))
        self._count = 0
        self._alpha = 1.0 - math.exp(-frame_s / tau_s)
        self.room_db = room_db

    def _learn_room(self, level: float) -> None:
        self._levels[self._count % len(self._levels)] = level
        self._count += 1
        heard = self._levels[:min(self._count, len(self._levels))]
        k = int(0.1 * (len(heard) - 1))
        self.room_db = float(np.partition(heard, k)[k])

    @property
    def threshold_db(self) -> float:
        """Frames below this level (dBFS) are a pause."""
        middle = (self.voice_db + self.room_db) / 2
        return max(self.floor_db, min(self.voice_db - self.margin_db, middle))

    def quiet(self, samples: np.ndarray) -> bool:
        """Whether this frame is a pause; it also teaches the finder the room's and the voice's level."""
        power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
        if power < 1e-10:
            # Digital silence: the gated converter's pauses are exact zeros. A pause, and the room is as
            # quiet as the floor; leaving it out taught the finder a "room" made of speech alone, and then
            # every word was a pause.
            self._learn_room(self.floor_db)
            return True
        level = 10 * math.log10(power)
        self._learn_room(level)
        if level >= self.room_db + self.voiced_db:
            self.voice_db += self._alpha * (level - self.voice_db)
        return level < self.threshold_db


# -- an impaired path, in user space ------------------------------------------------------------------

@dataclass
class Impairment:
    """What every datagram of the impaired connections goes through, in each direction separately.

    loss: share of datagrams dropped at random; delay_s: one-way delay (round trip is twice this);
    rate_bps: bottleneck rate (None: unlimited) with a drop-tail queue of `queue_s` seconds;
    down: drop everything (an outage), set and cleared by the caller.
    """

    loss: float = 0.0
    delay_s: float = 0.0
    rate_bps: Optional[float] = None
    queue_s: float = 0.2
    down: bool = False
    seed: int = 1
    counts: dict = field(default_factory=lambda: {"passed": 0, "lost": 0, "queue_full": 0, "outage": 0})

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._busy_until = {"in": 0.0, "out": 0.0}

    def schedule(self, direction: str, size: int, deliver, *args: Any) -> None:
        """Call `deliver(*args)` when a datagram of `size` bytes would arrive, or never if it is dropped."""
        if self.down:
            self.counts["outage"] += 1
            return
        if self.loss and self._rng.random() < self.loss:
            self.counts["lost"] += 1
            return
        loop = asyncio.get_event_loop()
        now = loop.time()
        leaves = now
        if self.rate_bps:
            start = max(now, self._busy_until[direction])
            if start - now > self.queue_s:
                self.counts["queue_full"] += 1
                return
            leaves = start + size * 8 / self.rate_bps
            self._busy_until[direction] = leaves
        self.counts["passed"] += 1
        when = leaves + self.delay_s
        if when <= now:
            deliver(*args)
        else:
            loop.call_at(when, deliver, *args)


class _ImpairedTransport:
    """A datagram transport whose `sendto` goes through an `Impairment` first; the rest is the real one's."""

    def __init__(self, transport: asyncio.DatagramTransport, impairment: Impairment) -> None:
        self._transport = transport
        self._impairment = impairment

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._impairment.schedule("out", len(data), self._send_now, data, addr)

    def _send_now(self, data: bytes, addr: Any) -> None:
        if not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@contextlib.contextmanager
def impaired_paths(impairment: Impairment) -> Iterator[Impairment]:
    """While the block lasts, ICE connections created in it send and receive through `impairment`.

    It wraps aioice's datagram protocol (the socket under every aiortc peer connection): outgoing datagrams
    pass `impairment` on the way out, incoming ones on the way in. Only this process's aiortc side is
    impaired, so put a browser (not a second aiortc peer in the same process) at the other end.
    """
    protocol = aioice.ice.StunProtocol
    made, received = protocol.connection_made, protocol.datagram_received

    def connection_made(self, transport) -> None:
        made(self, transport)
        self.transport = _ImpairedTransport(self.transport, impairment)

    def datagram_received(self, data, addr) -> None:
        impairment.schedule("in", len(data), received, self, data, addr)

    protocol.connection_made, protocol.datagram_received = connection_made, datagram_received
    try:
        yield impairment
    finally:
        protocol.connection_made, protocol.datagram_received = made, received
