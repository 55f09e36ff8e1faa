"""The far end's network: the impaired path itself, the operator's "her connection is weak", the framing's
glide, Opus FEC, and a 5-second outage that a phone in Chromium rides out with no action from her.

The outage runs the relay's side of the call through calls/network.py's user-space impairment (this
machine's kernel has no netem); the browser's page measures itself (framesDecoded, samples received).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from calls.framing import FaceFramer, Window
from calls.network import Impairment, impaired_paths, link_figures


# -- the impaired path --------------------------------------------------------------------------------

async def _send_through(impairment: Impairment, count: int, size: int = 1000) -> list[float]:
    loop = asyncio.get_running_loop()
    arrived: list[float] = []
    for _ in range(count):
        impairment.schedule("out", size, lambda: arrived.append(loop.time()))
    await asyncio.sleep(0)
    return arrived


async def test_impairment_loses_delays_limits_and_goes_down() -> None:
    loop = asyncio.get_running_loop()

    lossy = Impairment(loss=0.05, seed=7)
    arrived = await _send_through(lossy, 2000)
    assert 0.92 < len(arrived) / 2000 < 0.98, f"5% loss let {len(arrived)} of 2000 through"

    start = loop.time()
    slow = Impairment(delay_s=0.075, rate_bps=800_000, queue_s=1.0)
    arrived = await _send_through(slow, 20)  # 20 kB at 800 kbit/s: 10 ms each, after 75 ms of delay
    await asyncio.sleep(0.4)
    assert len(arrived) == 20
    assert arrived[0] - start >= 0.075 + 0.0099, "a datagram arrived before the path's delay"
    assert arrived[-1] - start >= 0.075 + 0.199, "the rate limit let 20 kB through faster than 800 kbit/s"

    full = Impairment(rate_bps=800_000, queue_s=0.05)  # 50 ms of queue: five 1000-byte datagrams wait
    arrived = await _send_through(full, 20)
    await asyncio.sleep(0.2)
    assert full.counts["queue_full"] > 10 and len(arrived) < 10, full.counts

    down = Impairment(down=True)
    assert await _send_through(down, 10) == [] and down.counts["outage"] == 10


# -- the operator's view of her link ----------------------------------------------------------------------

def test_link_figures_call_a_lossy_slow_link_weak_and_say_why() -> None:
    good = {"connectionState": "connected", "network": {"lossPct": 0.2, "rttMs": 40, "kbpsIn": 900, "fps": 29}}
    bad = {"connectionState": "connected", "network": {"lossPct": 6.5, "rttMs": 520, "kbpsIn": 180, "fps": 9}}
    assert link_figures(good)["weak"] is False
    verdict = link_figures(bad)
    assert verdict["weak"] is True
    for words in ("6.5% of packets lost", "520 ms round trip", "9 frames a second", "180 kbit/s"):
        assert words in verdict["why"], verdict
    assert link_figures({"connectionState": "disconnected", "network": {}})["weak"] is True
    assert link_figures(None) is None and link_figures({"connectionState": "connected"}) is None


# -- the framing: slow, smooth, in her screen's shape ---------------------------------------------------------

class _FaceAt:
    """A stand-in detector: the face is wherever the test puts it."""

    def __init__(self, cx: float, cy: float, h: float) -> None:
        self.face: tuple[float, float, float] | None = (cx, cy, h)

    def __call__(self, image: np.ndarray):
        return self.face


def _window(framer: FaceFramer) -> Window:
    return framer._window  # what the far end sees, before scaling


def test_framing_follows_the_face_slowly_ignores_jitter_and_turns_with_the_phone() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    face = _FaceAt(320, 220, 120)
    framer = FaceFramer(detector=face)
    assert framer.frame(image, 0.0).shape == image.shape, "before her screen is known, the picture is unchanged"
    framer.set_viewport(390, 844)
    out = framer.frame(image, 0.0)
    assert out.shape[0] > out.shape[1] and abs(out.shape[1] / out.shape[0] - 390 / 844) < 0.02, out.shape
    first = _window(framer)
    assert 0.30 <= 120 / first.height <= 0.5, "the face fills a good part of the upright screen"

    # Jitter of a few pixels (a detector's noise, a nod): the picture stays still.
    for i in range(1, 60):
        face.face = (320 + 3 * (-1) ** i, 220 + 2 * (-1) ** i, 120)
        framer.frame(image, i / 30)
    assert abs(_window(framer).cx - first.cx) < 0.5 and abs(_window(framer).cy - first.cy) < 0.5

    # The operator steps 120 px to the side: the picture glides there, never jumps, and arrives.
    face.face = (440, 220, 120)
    steps = []
    last = _window(framer).cx
    for i in range(60, 60 + 120):
        framer.frame(image, i / 30)
        steps.append(abs(_window(framer).cx - last))
        last = _window(framer).cx
    assert max(steps) < 6.0, f"the picture jumped {max(steps):.1f} px in one frame"
    half_w = _window(framer).height * 390 / 844 / 2
    assert abs(_window(framer).cx - min(440, 640 - half_w)) < 2.0, "the picture did not arrive at the face"

    # The phone is turned: the picture takes the new shape at once, and never leaves the source picture.
    framer.set_viewport(844, 390)
    out = framer.frame(image, 200 / 30)
    assert out.shape[1] > out.shape[0] and abs(out.shape[1] / out.shape[0] - 844 / 390) < 0.02, out.shape
    w = _window(framer)
    assert w.cx - w.height * 844 / 390 / 2 >= -1e-6 and w.cx + w.height * 844 / 390 / 2 <= 640 + 1e-6
    assert w.cy - w.height / 2 >= -1e-6 and w.cy + w.height / 2 <= 480 + 1e-6

    # No face for a while: back, slowly, to the whole picture.
    face.face = None
    for i in range(200, 200 + 30 * 8):
        framer.frame(image, i / 30)
    assert _window(framer).height > 0.95 * min(480, 640 / (844 / 390))


def test_viewport_out_of_range_is_refused_or_clamped() -> None:
    framer = FaceFramer(detector=_FaceAt(320, 240, 100))
    with pytest.raises(ValueError):
        framer.set_viewport(0, 844)
    assert framer.set_viewport(100, 10000) == pytest.approx(0.4)


def test_the_soft_fill_is_as_bright_in_the_corners_as_along_the_edges() -> None:
    """A close-up on a screen of the picture's own shape: the window reaches past all four edges. The fill
    is one blurred, dimmed mirror everywhere; the corners were dimmed twice (0.36 instead of 0.6 of the
    picture), four dark squares around her face."""
    from calls.framing import crop, largest_height

    grey = np.full((480, 640, 3), 200, np.uint8)
    out = crop(grey, Window(320, 240, largest_height(4 / 3, 640, 480)), 4 / 3, (640, 480))[..., 0].astype(int)
    edges = [out[0, 320], out[-1, 320], out[240, 0], out[240, -1]]
    corners = [out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]]
    assert out[240, 320] == 200 and max(edges) < 200
    assert min(corners) >= min(edges) - 2 and max(corners) <= max(edges) + 2, (corners, edges)


# -- Opus in-band FEC ------------------------------------------------------------------------------

def _opus_modes(fec_loss_pct: int) -> set[int]:
    import fractions

    import av

    from calls.encoders import LowDelayOpusEncoder

    from calls.demo.voice import speak

    encoder = LowDelayOpusEncoder(10, fec_loss_pct)
    speech = speak("Hello, can you hear me? It is so good to see you again.", "en+f3", 48000)
    voice = (np.clip(speech, -1, 1) * 20000).astype(np.int16)  # speech: Opus's classifier calls a tone music
    configs = set()
    for i in range(0, len(voice) - 480, 480):
        frame = av.AudioFrame.from_ndarray(voice[None, i:i + 480], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, fractions.Fraction(1, 48000)
        payloads, _ = encoder.encode(frame)
        configs.update(p[0] >> 3 for p in payloads)
    return configs


def test_opus_carries_in_band_fec_only_when_asked() -> None:
    # TOC configs 0-15 carry a SILK layer (where Opus's in-band FEC lives); 16-31 are CELT only.
    assert all(c >= 16 for c in _opus_modes(0)), "the default low-delay mode should stay CELT-only"
    assert all(c < 16 for c in _opus_modes(5)), "with FEC asked for, packets must carry a SILK layer"


# -- a 5 s outage, ridden out by a phone in Chromium -------------------------------------------------------

PLAYING = """(async () => {
  const pc = window.evercall && window.evercall.pc;
  if (!pc) return null;
  const o = { state: pc.connectionState, reconnects: window.evercall.reconnects };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') o.frames = s.framesDecoded;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') { o.samples = s.totalSamplesReceived; o.concealed = s.concealedSamples; }
  });
  return o;
})()"""


@pytest.mark.parametrize("whole", [False, True], ids=["media-path-down", "whole-network-down"])
async def test_five_second_outage_recovers_by_itself(demo, demo_persona, whole: bool) -> None:
    """whole: her page's HTTP goes down too (so the relay stops hearing from her, gives her seat up after its
    grace, and only a fresh offer from the page brings the call back); else only the media path drops."""
    from calls.serve import ServeOptions, start_call
    from calls.sources import FileSource
    from benchmarks.browser import PHONE_UPRIGHT, devtools_page, require_chromium

    require_chromium()
    loop = asyncio.get_running_loop()
    path = Impairment()
    with impaired_paths(path):
        call = await start_call(demo_persona, FileSource(demo.operator_clip, loop=True), ServeOptions(port=0))
        try:
            async with devtools_page(call.join_url, PHONE_UPRIGHT, autoplay_without_tap=True) as (page, browser):
                deadline = loop.time() + 60
                while loop.time() < deadline:
                    now = await page.evaluate(PLAYING)
                    if now and (now.get("frames") or 0) > 60:
                        break
                    await asyncio.sleep(0.25)
                assert now and (now.get("frames") or 0) > 60, f"the call never played: {now}\n{browser.log_tail()}"

                offline = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
                if whole:
                    await page.send("Network.enable")
                    await page.send("Network.emulateNetworkConditions", {"offline": True, **offline})
                path.down = True
                await asyncio.sleep(5.0)
                during = await page.evaluate(PLAYING)
                path.down = False
                if whole:
                    await page.send("Network.emulateNetworkConditions", {"offline": False, **offline})
                back_at = loop.time()

                # Playing again: new frames decoded and new audio that is not all concealment, twice in a row.
                played, seen, recovered_s = 0, during, None
                while loop.time() < back_at + 20:
                    await asyncio.sleep(0.2)
                    now = await page.evaluate(PLAYING)
                    if not now or now.get("frames") is None or now.get("samples") is None:
                        continue
                    new_frames = now["frames"] > (seen.get("frames") or 0)
                    real_audio = (now["samples"] - (seen.get("samples") or 0)) - \
                        (now.get("concealed", 0) - (seen.get("concealed") or 0)) > 0
                    played = played + 1 if new_frames and real_audio and now["state"] == "connected" else 0
                    if played == 1:
                        recovered_s = loop.time() - back_at
                    seen = now
                    if played >= 2:
                        break
                print(f"outage: dropped {path.counts['outage']} datagrams; playing again {recovered_s} s after "
                      f"the network returned; page state during the outage {during and during.get('state')}, "
                      f"re-offers {now and now.get('reconnects')}")
        finally:
            await call.stop()
    assert path.counts["outage"] > 100, "the outage did not cut anything"
    assert played >= 2, f"the far end was not playing 20 s after the network returned: {now}"
    assert recovered_s is not None and recovered_s <= 5.0, f"playing again only {recovered_s:.1f} s after the outage"


# -- the bitrate follows the path's loss ------------------------------------------------------------

def test_path_follower_backs_off_on_heavy_loss_holds_on_light_loss_and_climbs_back() -> None:
    from calls.encoders import CappedVp8Encoder
    from calls.network import PathFollower

    encoder = CappedVp8Encoder(1_500_000, 500_000)
    encoder.target_bitrate = 1_000_000  # the far end's REMB asks for more than the path carries
    follower = PathFollower(pc=None, min_step_s=2.0)
    t = 0.0
    follower.step(encoder, 0.25, t)  # the bottleneck's queue overflows: a quarter of the packets lost
    assert encoder.target_bitrate == int(1_000_000 * (1 - 0.125)), encoder.target_bitrate
    follower.step(encoder, 0.25, t + 0.5)  # too soon for another step: each one restarts the encoder
    assert encoder.target_bitrate == 875_000
    for i in range(1, 8):
        follower.step(encoder, 0.2, t + 2.0 * i)
    low = encoder.target_bitrate
    assert low < 500_000, "seven reports of heavy loss must halve the rate"
    encoder.target_bitrate = 1_200_000  # a later REMB may not lift the rate over the path's cap
    assert encoder.target_bitrate == low
    for i in range(8, 12):
        follower.step(encoder, 0.05, t + 2.0 * i)  # 5% random loss (Wi-Fi): hold, neither up nor down
    assert encoder.target_bitrate == low
    for i in range(12, 40):
        follower.step(encoder, 0.0, t + 2.0 * i)  # a clean path again: back up to what REMB asks for
    assert follower.cap_bps is None and encoder.target_bitrate == 1_200_000


async def test_path_follower_rides_out_random_wifi_loss_but_not_an_overflowing_queue() -> None:
    """Over a live (fake) sender: 5% random loss leaves the rate alone; 25% loss brings it down."""
    import random
    from types import SimpleNamespace

    from calls.encoders import CappedVp8Encoder
    from calls.network import PathFollower

    class Sender:
        def __init__(self, loss: float) -> None:
            self.track = SimpleNamespace(kind="video")
            self._RTCRtpSender__encoder = CappedVp8Encoder(1_500_000, 600_000)
            self.loss, self.lost, self.received = loss, 0, 0
            self.rng = random.Random(5)

        async def getStats(self) -> dict:
            for _ in range(30):  # 60 packets a second, reported every 0.5 s
                if self.rng.random() < self.loss:
                    self.lost += 1
                else:
                    self.received += 1
            return {"r": SimpleNamespace(type="remote-inbound-rtp", packetsLost=self.lost,
                                         packetsReceived=self.received)}

    async def run_for(loss: float, seconds: float) -> int:
        sender = Sender(loss)
        pc = SimpleNamespace(connectionState="connected", getSenders=lambda: [sender])
        follower = PathFollower(pc, interval_s=0.01, min_step_s=0.02)  # 50x faster than real time
        task = asyncio.ensure_future(follower.run())
        await asyncio.sleep(seconds / 50)
        pc.connectionState = "closed"
        await task
        return sender._RTCRtpSender__encoder.target_bitrate

    assert await run_for(0.05, 60) == 600_000, "5% random loss must not lower the rate"
    assert await run_for(0.25, 100) < 400_000, "an overflowing queue (25% loss) must lower it"


# -- the voice waits for the picture on a lossy path --------------------------------------------------

def test_voice_hold_follows_the_reported_lag_slowly_within_bounds() -> None:
    from calls.network import VoiceHold

    clock = [0.0]
    hold = VoiceHold(max_ms=150, step_ms=20, every_s=1.0, clock=lambda: clock[0])

    def report(lag: float | None, seconds: float = 1.0) -> float:
        clock[0] += seconds
        return hold.report(lag)

    assert report(90) == 0 and report(90) == 0, "two reports are not enough to act on"
    seen = [report(90) for _ in range(8)]
    assert seen[0] == 20, "the first move is one small step"
    assert all(b - a <= 20 for a, b in zip([0] + seen, seen)), f"never more than 20 ms a step: {seen}"
    settled = seen[-1]
    assert abs(settled - 90) < hold.deadband_ms and seen[-2] == settled, "it settles on the picture's lag"
    assert report(20, seconds=0.2) == settled, "no second move within a second"
    assert report(None) == settled and report(float("nan")) == settled, "a report without the figure changes nothing"
    for _ in range(3):
        report(92)  # within the dead band of where it is: stays put
    assert hold.target_ms == settled
    for _ in range(20):
        report(400)  # a picture far behind: the voice is held no more than max_ms
    assert hold.target_ms == 150
    for _ in range(20):
        report(-30)  # the voice behind the picture (a clean path): the hold goes back to nothing
    assert hold.target_ms == 0 and hold.frames(0.01) == 0


async def test_voice_hold_delays_the_voice_and_changes_only_in_pauses() -> None:
    """The audio track holds the voice back by the hold's target in whole frames: grown by silence and
    shrunk by leaving out frames, both only where the voice is quiet; no word is cut, the clock runs on."""
    from calls.network import VoiceHold
    from calls.tracks import PersonaAudioTrack
    from engine.media import now
    from engine.stages import AudioRing

    frame = 480
    ring = AudioRing(48000, capacity_s=0.3)
    hold = VoiceHold()
    track = PersonaAudioTrack(ring, frame=frame, grace_s=10.0, hold=hold)

    def quiet(k: int) -> np.ndarray:  # a pause: distinct, quiet frames (rms far below -40 dBFS)
        return np.full(frame, 0.001 * (1 + k % 5), np.float32)

    loud = np.full(frame, 0.5, np.float32)
    out, pts = [], []

    async def send(block: np.ndarray) -> None:
        ring.write(block, now())
        got = await asyncio.wait_for(track.recv(), 20.0)
        pts.append(got.pts)
        out.append(got.to_ndarray().reshape(-1).astype(np.float32) / 32767)

    def is_loud(block: np.ndarray) -> bool:
        return float(np.abs(block).mean()) > 0.25

    await send(loud)  # a word is going out when the hold is asked for: it is not cut
    hold.target_ms = 30.0
    for _ in range(2):
        await send(loud)
    assert track.held_ms == 0, "the hold must not grow in the middle of a word"
    for k in range(6):
        await send(quiet(k))
    assert track.held_ms == 30 and hold.applied_ms == 30, "in the pause it grows to the target"
    for _ in range(4):
        await send(loud)  # the next word: heard 3 frames (30 ms) later than sent in
    for k in range(6):
        await send(quiet(k))
    word_in, word_out = 9, [i for i, b in enumerate(out) if is_loud(b)][3]
    assert word_out - word_in == 3, "the word leaves as many frames later as the hold"
    hold.target_ms = 0.0
    for _ in range(3):
        await send(loud)
    held_in_word = track.held_ms
    for k in range(8):
        await send(quiet(k))
    assert held_in_word > 0 and track.held_ms == 0, "the hold shrinks in the pause, not in the word"
    assert sum(is_loud(b) for b in out) == 10, "every loud frame is heard, none left out or doubled"
    assert pts == [frame * k for k in range(len(pts))], "one packet per frame, the audio clock unbroken"


@pytest.mark.parametrize("word_rms, pause_rms", [(0.005, 0.0002), (0.1, 0.02), (0.02, 0.0)],
                         ids=["quiet-speaker", "noisy-room", "gated-converter"])
async def test_voice_hold_finds_the_pauses_of_a_quiet_speaker_and_in_a_noisy_room(word_rms, pause_rms) -> None:
    """Pauses are told from words against the voice and room heard so far, not a fixed -40 dBFS: a soft
    voice at -46 dBFS (all "pause" under a fixed level: the hold cut into her words) and a room whose fan
    is at -34 dBFS (all "speech": the hold never moved); and the gated converter's pauses, which are exact
    zeros. Either way the hold reaches its target, only in the pauses: no silence lands inside a word and
    no word frame is left out."""
    from calls.network import VoiceHold
    from calls.tracks import PersonaAudioTrack
    from engine.media import now
    from engine.stages import AudioRing

    frame, rng = 480, np.random.default_rng(5)
    ring = AudioRing(48000, capacity_s=0.3)
    hold = VoiceHold()
    track = PersonaAudioTrack(ring, frame=frame, grace_s=10.0, hold=hold)
    sent, out = [], []

    async def say(words: int, set_target_after: int | None = None) -> None:
        for w in range(words):  # a word of 0.3 s (its loudness swells and falls), then a pause of 0.15 s
            envelope = 0.5 + 0.5 * np.sin(np.linspace(0, np.pi, 30))
            blocks = [("word", word_rms * e) for e in envelope] + [("pause", pause_rms)] * 15
            for k, (kind, rms) in enumerate(blocks):
                if w == set_target_after and k == 10:
                    hold.target_ms = 30.0  # asked for in the middle of a word
                ring.write((rms * rng.standard_normal(frame)).astype(np.float32), now())
                got = await asyncio.wait_for(track.recv(), 20.0)
                sent.append(kind)
                out.append(got.to_ndarray().reshape(-1).astype(np.float32) / 32767)

    await say(10)  # four and a half seconds of talk: the finder learns this voice and this room
    assert track.held_ms == 0
    await say(4, set_target_after=0)
    assert track.held_ms == 30 and hold.applied_ms == 30, "the hold reached its target in the pauses"
    level = np.sqrt(word_rms * max(pause_rms, word_rms / 100))  # between a pause and the softest word frame
    kinds = ["silence" if not b.any() else "word" if np.sqrt(np.mean(b**2)) > level else "pause" for b in out]
    assert kinds.count("word") == sent.count("word"), "no word frame left out"
    words = "".join("w" if k == "word" else "." for k in kinds).split(".")
    assert {len(w) for w in words if w} == {30}, "every word comes out whole: no silence inside a word"
    if pause_rms:
        inserted = [i for i, k in enumerate(kinds) if k == "silence"]
        assert len(inserted) == 3, kinds


async def test_the_answer_puts_voice_and_picture_in_one_stream_and_reports_move_the_hold(server) -> None:
    """Chromium lip-syncs only the tracks of one MediaStream (one msid stream id, one RTCP CNAME); the
    relay's answer has both there, and the lag the page reports steers the relay's voice hold."""
    import re

    import aiohttp
    from aiortc import RTCPeerConnection

    state, base = server
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    join = f"{base}/join/{state.invite.token}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(join) as r:
                assert r.status == 200
            async with s.post(f"{join}/offer", json={"sdp": pc.localDescription.sdp,
                                                     "type": pc.localDescription.type}) as r:
                assert r.status == 200, await r.text()
                answer = (await r.json())["sdp"]
            sections = answer.split("\r\nm=")[1:]
            streams = {m.split()[0]: re.findall(r"a=msid:(\S+) \S+", m) for m in sections}
            cnames = {m.split()[0]: set(re.findall(r"a=ssrc:\d+ cname:(\S+)", m)) for m in sections}
            assert streams["video"] and streams["video"] == streams["audio"], streams
            assert cnames["video"] and cnames["video"] == cnames["audio"], cnames
            hold = state.voice_hold
            assert hold is not None and hold.target_ms == 0
            hold.every_s = 0.0  # each report may move it (the page reports once a second)
            for lag in (None, 100, 100, 100, 100):
                video = {"framesDecoded": 100} if lag is None else {"framesDecoded": 100, "behindVoiceMs": lag}
                async with s.post(f"{join}/report", json={"connectionState": "connected", "video": video}) as r:
                    assert r.status == 204, await r.text()
            assert hold.target_ms == 2 * hold.step_ms, "two small steps towards the reported 100 ms"
            async with s.get(f"{base}/operator/{state.config.operator_token}/stats.json") as r:
                assert r.status == 200, await r.text()
                figures = (await r.json())["voice_hold"]  # the operator sees it too
            assert figures["target_ms"] == hold.target_ms and figures["lag_reported_ms"] == 100
    finally:
        await pc.close()


async def test_a_voice_hold_turned_off_stays_off_when_she_reconnects(server) -> None:
    """The hold's bound is the call's (bench_network --no-hold sets it to 0): each new connection's hold
    takes it, so a reconnect after an outage does not quietly turn the hold back on."""
    import aiohttp
    from aiortc import RTCPeerConnection

    state, base = server
    state.voice_hold_max_ms = 0.0
    join = f"{base}/join/{state.invite.token}"
    holds = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(join) as r:
            assert r.status == 200
        for _ in range(2):  # she connects, then her page reconnects (same browser)
            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            try:
                async with s.post(f"{join}/offer", json={"sdp": pc.localDescription.sdp,
                                                         "type": pc.localDescription.type}) as r:
                    assert r.status == 200, await r.text()
                hold = state.voice_hold
                assert hold is not None and hold not in holds
                holds.append(hold)
                hold.every_s = 0.0
                for _ in range(5):  # her picture is 100 ms behind: an enabled hold would move
                    async with s.post(f"{join}/report", json={"connectionState": "connected",
                                                              "video": {"framesDecoded": 100,
                                                                        "behindVoiceMs": 100}}) as r:
                        assert r.status == 204, await r.text()
                assert hold.target_ms == 0, "the hold stays off"
            finally:
                await pc.close()
