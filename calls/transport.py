"""Receive-side tuning of aiortc's jitter buffers (the send side is calls/encoders.py; both rebind one name).

Why. aiortc 1.16 reassembles incoming RTP in `aiortc.jitterbuffer.JitterBuffer`, built by
`RTCRtpReceiver.__init__` as `JitterBuffer(capacity=512, is_video=True)` for video and
`JitterBuffer(capacity=16, prefetch=4)` for audio. Measured on loopback (docs in /work/shared/DESIGN.md):
- video: a frame is released only when the first packet of the NEXT frame arrives, so every frame waits
  one frame interval (33 ms at 30 fps) although its last packet, the one with the RTP marker bit, said it
  was complete. VP8 took about 44 ms capture-to-decoded stock, 7.4 ms when released on the marker bit;
- audio: four packets (80 ms) are held back before the first one is released.
Wherever evercall receives media (the far end's camera and microphone, and the benchmark's far-end
client) that is latency for nothing on a LAN; some audio prefetch still pays off on a real network.

How. `RTCRtpReceiver.__init__` looks the name `JitterBuffer` up in the module `aiortc.rtcrtpreceiver` each
time it builds a receiver. `tune_receivers()` rebinds that one name to `TunedJitterBuffer`, a subclass
of aiortc's class that adds two release rules and otherwise behaves as aiortc does (same reordering
window, loss handling and PLI signalling). Receivers built afterwards use it (a peer connection builds
its receivers when the remote or local description creates its transceivers); receivers that already
exist keep the buffer they were built with. `restore_receivers()` puts aiortc's own class back.
Calling `tune_receivers` again only changes the settings: nothing stacks.

The subclass overrides `JitterBuffer._remove_frame`, an internal of aiortc 1.16, and reads others (see
`_requires`); `tune_receivers` checks that every one is there and leaves aiortc untouched (with one warning
naming what is gone) when one is not.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import aiortc.jitterbuffer as _jb
import aiortc.rtcrtpreceiver as _receiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from calls.aiortc_patch import NamePatch, lacks, lacks_parameters


AIORTC_JITTER_BUFFER = _jb.JitterBuffer  # aiortc's own class, taken from its defining module, never patched
AUDIO_CAPACITY = 16  # packets: what aiortc gives its audio buffer


@dataclass(frozen=True)
class ReceiveTuning:
    """How receivers built from now on release frames.

    video_release_on_marker: hand a video frame to the decoder as soon as its packets up to the one with
      the marker bit are all in, instead of when the next frame begins (saves one frame interval).
    audio_prefetch: audio packets held back before the oldest is released (aiortc: 4, i.e. 80 ms of
      20 ms Opus packets; 1 still absorbs one packet of reordering; 0 releases each packet on arrival).
    """

    video_release_on_marker: bool = True
    audio_prefetch: int = 1


class TunedJitterBuffer(AIORTC_JITTER_BUFFER):
    """aiortc's jitter buffer plus release-on-marker (video) and a configurable audio prefetch.

    The settings are read once, when a receiver builds its buffer, from `tuning` or else from the
    process-wide settings that `tune_receivers` stored.
    """

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False,
                 tuning: Optional[ReceiveTuning] = None) -> None:
        tuning = tuning or _patch.settings_or(ReceiveTuning())
        if not is_video:
            prefetch = tuning.audio_prefetch
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self.tuning = tuning
        # Video: a frame is complete at its marker packet. Audio with no prefetch: every packet is a frame
        # (one Opus frame per packet), and the audio marker bit only flags a talkspurt start, so it is ignored.
        self._release_early = tuning.video_release_on_marker if is_video else prefetch == 0

    def _remove_frame(self, sequence_number: int) -> Optional[JitterFrame]:
        if self._release_early:
            frame = self._complete_head()
            if frame is not None:
                return frame
        # aiortc's rule: release the oldest frame once enough newer packets follow it. It still serves a
        # frame whose marker packet was lost, so nothing waits longer than it would without tuning.
        return super()._remove_frame(sequence_number)

    def _complete_head(self) -> Optional[JitterFrame]:
        """The oldest frame, removed from the buffer, if all its packets are in; else None."""
        if self._origin is None:
            return None
        packets = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None  # a gap: wait for the missing packet (or for aiortc's rule)
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                return None  # the frame ended without a marker packet: aiortc's rule releases it
            packets.append(packet)
            if packet.marker or not self._is_video:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
        return None


def _requires() -> list[str]:
    """Every aiortc internal TunedJitterBuffer relies on that this aiortc lacks (empty: the patch fits)."""
    stock = AIORTC_JITTER_BUFFER
    return (lacks_parameters(stock, "capacity", "prefetch", "is_video")  # how receivers build it, how we do
            + lacks(stock, "_remove_frame", "remove")
            + lacks_parameters(getattr(stock, "_remove_frame", None), "sequence_number")
            + lacks_parameters(getattr(stock, "remove", None), "count")
            + lacks(stock(capacity=4, is_video=True), "_origin", "_packets", "_capacity", "_is_video")
            + lacks_parameters(JitterFrame, "data", "timestamp")
            + lacks(RtpPacket(), "marker", "timestamp")
            + _reads_packet_data(stock))


def _reads_packet_data(stock: type) -> list[str]:
    """The receiver leaves each packet's depayloaded bytes in `packet._data` for the buffer to join; the
    attribute appears only in flight, so check that aiortc's own buffer still reads it (unknown: trust)."""
    method = getattr(stock, "_remove_frame", None)
    return [] if method is None or _joins_packet_data(method) else [
        "RtpPacket._data (no longer what the jitter buffer joins)"]


@functools.lru_cache(maxsize=4)
def _joins_packet_data(method: Any) -> bool:
    try:
        return "._data" in inspect.getsource(method)
    except (OSError, TypeError):
        return True


_patch: NamePatch[ReceiveTuning] = NamePatch(
    _receiver, "JitterBuffer", AIORTC_JITTER_BUFFER, TunedJitterBuffer, _requires,
    "aiortc's jitter buffer is not the one calls/transport.py was written for: receive tuning skipped "
    "(video waits one extra frame interval, audio 80 ms)")


def tune_receivers(video_release_on_marker: bool = True, audio_prefetch: int = 1) -> Optional[ReceiveTuning]:
    """Make aiortc receivers built from now on release media early (see the module docstring).

    Idempotent; returns the settings now in force, or None when this aiortc lacks what the patch needs
    (it is then left as it is, which costs latency but nothing else).
    """
    if not 0 <= audio_prefetch < AUDIO_CAPACITY:
        raise ValueError(f"audio_prefetch must be 0..{AUDIO_CAPACITY - 1} packets, got {audio_prefetch}")
    return _patch.apply(ReceiveTuning(video_release_on_marker, audio_prefetch))


def restore_receivers() -> None:
    """Give receivers built from now on aiortc's own jitter buffer again (idempotent)."""
    _patch.restore()


def current_tuning() -> Optional[ReceiveTuning]:
    """The settings receivers are built with now, or None for aiortc's own behaviour."""
    return _patch.current()


@contextlib.contextmanager
def receivers_tuned(video_release_on_marker: bool = True, audio_prefetch: int = 1) -> Iterator[Optional[ReceiveTuning]]:
    """`tune_receivers` for the duration of a block, then whatever was in force before."""
    before = current_tuning()
    try:
        yield tune_receivers(video_release_on_marker, audio_prefetch)
    finally:
        if before is None:
            restore_receivers()
        else:
            tune_receivers(before.video_release_on_marker, before.audio_prefetch)
