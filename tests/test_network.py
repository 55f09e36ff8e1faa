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
