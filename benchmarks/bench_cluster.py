"""Beyond one machine, measured on this one: the delay a Janus SFU adds, and calls placed by Ray.

`sfu`: one aiortc sender sends a 640x480 30 fps picture whose bottom strip carries the frame number
(benchmarks/latency.py's barcode) and remembers when it made each frame; an aiortc receiver reads the
number off every decoded frame. Two paths, alternated in one run with the same tuned aiortc (the relay's
own send and receive settings): peer-to-peer (sender -> receiver) and through a local Janus videoroom
(sender -> Janus -> receiver), five rounds. The SFU's cost is the median over rounds of (SFU median - P2P
median): each round's pair saw the same load, which on a shared machine moves both by tens of ms.

`cluster`: time to first converted frame (a call asked for -> its first persona frame out of the pipeline)
for a local call in this process against a call placed by the front door on a worker actor of a local
two-node Ray cluster; and how many calls one node's share admits before the next is refused.

Run: `python -m benchmarks.bench_cluster sfu|cluster|all [--seconds S] [--json OUT]`.
Figures are loopback figures on a shared machine: compare the paths measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from benchmarks.latency import draw_barcode, luma_of, read_barcode
from calls.ice import rtc_configuration

FPS = 30


class _StampedTrack(MediaStreamTrack):
    """Frames numbered in a barcode; `sent[n]` is when frame n was made (monotonic)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[int, float] = {}
        self._n = 0
        self._t0 = time.monotonic()
        rng = np.random.default_rng(0)
        self._base = rng.integers(60, 200, (480, 640, 3), dtype=np.uint8)

    async def recv(self) -> av.VideoFrame:
        self._n += 1
        await asyncio.sleep(max(0.0, self._t0 + self._n / FPS - time.monotonic()))
        image = np.roll(self._base, self._n, axis=1)
        draw_barcode(image, self._n)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = self._n * 3000, fractions.Fraction(1, 90000)
        self.sent[self._n % 65536] = time.monotonic()
        return frame


def _receiver(pc: RTCPeerConnection, track_sent: dict[int, float], delays: list[float], since: list[float]):
    @pc.on("track")
    def on_track(track) -> None:
        async def pull() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:  # the connection was closed at the end of the round
                    return
                t = time.monotonic()
                seq = read_barcode(luma_of(frame))
                if seq is not None and seq in track_sent and t >= since[0]:
                    delays.append((t - track_sent[seq]) * 1000)
        asyncio.ensure_future(pull())


async def _p2p(seconds: float, warmup: float) -> list[float]:
    track = _StampedTrack()
    sender, receiver = RTCPeerConnection(rtc_configuration()), RTCPeerConnection(rtc_configuration())
    delays: list[float] = []
    since = [time.monotonic() + warmup]
    _receiver(receiver, track.sent, delays, since)
    sender.addTrack(track)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    since[0] = time.monotonic() + warmup
    await asyncio.sleep(warmup + seconds)
    await sender.close()
    await receiver.close()
    return delays


async def _through_janus(room, seconds: float, warmup: float) -> list[float]:
    """Publish into the room `room` (an open calls.sfu.janus session, room id, pin) and subscribe back."""
    session, room_id, pin = room
    track = _StampedTrack()
    sender, receiver = RTCPeerConnection(rtc_configuration()), RTCPeerConnection(rtc_configuration())
    delays: list[float] = []
    since = [time.monotonic() + 3600]
    _receiver(receiver, track.sent, delays, since)
    pub = await session.attach()
    joined, _ = await pub.request({"request": "join", "ptype": "publisher", "room": room_id, "pin": pin})
    sender.addTrack(track)
    await sender.setLocalDescription(await sender.createOffer())
    _, answer = await pub.request({"request": "publish", "video": True, "audio": False},
                                  {"type": "offer", "sdp": sender.localDescription.sdp})
    await sender.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    sub = await session.attach()
    offer = None
    for _ in range(60):
        try:
            _, offer = await sub.request({"request": "join", "ptype": "subscriber", "room": room_id, "pin": pin,
                                          "streams": [{"feed": joined["id"]}]})
            break
        except Exception:  # the feed is live once the sender's connection is up
            await asyncio.sleep(0.25)
    await receiver.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sub.request({"request": "start"}, {"type": "answer", "sdp": receiver.localDescription.sdp})
    since[0] = time.monotonic() + warmup
    await asyncio.sleep(warmup + seconds)
    await sender.close()
    await receiver.close()
    await sub.detach()
    await pub.detach()
    return delays


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2)}


async def measure_sfu(seconds: float = 5.0, rounds: int = 5, warmup: float = 1.5) -> dict:
    from calls.media_options import MediaOptions
    from calls.sfu.janus import JanusServer, JanusSession

    MediaOptions().apply_to_aiortc()  # the relay's own encoder and jitter-buffer settings, on both paths
    server = await JanusServer().start()
    session = await JanusSession(server.url, server.api_secret).open()
    try:
        admin = await session.attach()
        await admin.request({"request": "create", "room": 4242, "pin": "p", "publishers": 8, "videocodec": "vp8",
                             "admin_key": server.admin_key(), "bitrate": 2_000_000})
        p2p: list[float] = []
        sfu: list[float] = []
        differences = []
        for _ in range(rounds):  # alternated, so a burst of load elsewhere hits both paths alike
            one = await _p2p(seconds, warmup)
            two = await _through_janus((session, 4242, "p"), seconds, warmup)
            p2p += one
            sfu += two
            if one and two:
                differences.append(statistics.median(two) - statistics.median(one))
    finally:
        await session.close()
        await server.stop()
    # The median of the per-round differences: each round's two paths saw the same load on the machine.
    added = round(statistics.median(differences), 2) if differences else None
    return {"p2p": _summary(p2p), "sfu": _summary(sfu), "rounds": rounds,
            "per_round_added_p50_ms": [round(d, 2) for d in differences],
            "sfu_added_p50_ms": added, "limit_ms": 15.0, "ok": added is not None and added <= 15.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("sfu", "cluster", "all"))
    parser.add_argument("--seconds", type=float, default=5.0, help="per path and round (5 rounds)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out: dict = {}
    if args.what in ("sfu", "all"):
        out["sfu"] = asyncio.run(measure_sfu(args.seconds))
    if args.what in ("cluster", "all"):
        from benchmarks.cluster_timing import measure_cluster

        out["cluster"] = measure_cluster()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
