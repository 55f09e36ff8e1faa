"""Send-side tuning of aiortc: the encoders evercall's outgoing tracks go through.

Why. aiortc 1.16 builds one encoder per sender with `aiortc.codecs.get_encoder`, looked up by name in
`aiortc.rtcrtpsender` when the first frame is sent. Its Opus encoder always packs 20 ms frames in the
"voip" mode: every packet waits for 20 ms of samples, and the decoder's output lags by a further 6.5 ms
of encoder lookahead. For a relay whose voice must reach the far end within a few tens of ms that is
most of the budget: 10 ms frames in Opus's "lowdelay" mode (CELT only, 2.5 ms lookahead) halve the
packing wait and cut the lookahead by 4 ms, at the cost of 100 instead of 50 packets a second.
Its video encoders start at a fixed bitrate (VP8 500 kbit/s, H.264 1 Mbit/s) that receiver reports may
move between their own bounds; `--video-kbps` sets where they start and caps where reports may take them.

How. `tune_senders()` rebinds the one name `get_encoder` in `aiortc.rtcrtpsender` to `_get_encoder`,
which builds the classes below from the settings in force and leaves every other codec to aiortc.
Senders that already have an encoder keep it. `restore_senders()` puts aiortc's function back.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Optional

import aiortc.rtcrtpsender as _sender
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs import h264, vpx
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import SAMPLE_RATE, OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from av import AudioResampler

from calls.aiortc_patch import NamePatch, lacks, lacks_parameters


OPUS_FRAME_MS = (10, 20)  # frame lengths both Opus and every browser handle; 2.5/5 ms cost too many packets


@dataclass(frozen=True)
class SendTuning:
    """How senders built from now on encode.

    opus_frame_ms: length of one Opus packet (10 or 20 ms); the audio track sends frames of this length.
    video_kbps: starting and highest video bitrate (None: aiortc's own, 500 kbit/s for VP8).
    opus_fec_loss_pct: expected packet loss (%) for Opus in-band FEC; 0 (default) keeps the low-delay
      CELT-only mode, which cannot carry FEC. Above 0 each packet also carries a coarse copy of the one
      before (Opus "voip" mode, 4 ms more lookahead, 48 kbit/s), so a lone lost packet is rebuilt by
      the far end's decoder instead of concealed: what a lossy home Wi-Fi or 4G path needs.
    """

    opus_frame_ms: int = 10
    video_kbps: Optional[int] = None
    opus_fec_loss_pct: int = 0

    def __post_init__(self) -> None:
        if self.opus_frame_ms not in OPUS_FRAME_MS:
            raise ValueError(f"Opus frames must be {' or '.join(map(str, OPUS_FRAME_MS))} ms, "
                             f"not {self.opus_frame_ms}")
        if not 0 <= self.opus_fec_loss_pct <= 50:
            raise ValueError(f"expected Opus packet loss must be 0-50 %, not {self.opus_fec_loss_pct}")
        if self.video_kbps is not None and not 50 <= self.video_kbps <= 20000:
            raise ValueError(f"video bitrate must be 50-20000 kbit/s, not {self.video_kbps}")

    @property
    def opus_frame_samples(self) -> int:
        return SAMPLE_RATE * self.opus_frame_ms // 1000


class LowDelayOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder with a chosen frame length and Opus's low-delay mode."""

    def __init__(self, frame_ms: int = 10, fec_loss_pct: int = 0) -> None:
        super().__init__()
        # Options are read when the codec opens, at the first encode, so they can still change here.
        self.codec.options = {"application": "lowdelay", "frame_duration": str(frame_ms)}
        if fec_loss_pct > 0:  # in-band FEC lives in Opus's SILK layer, which "lowdelay" leaves out
            self.codec.options = {"application": "voip", "frame_duration": str(frame_ms), "fec": "1",
                                  "packet_loss": str(fec_loss_pct)}
            self.codec.bit_rate = 48000
        self.fec_loss_pct = fec_loss_pct
        self.resampler = AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE,
                                        frame_size=SAMPLE_RATE * frame_ms // 1000)
        self.frame_ms = frame_ms


def _capped(base: type, module: ModuleType) -> type:
    """A subclass of aiortc's video encoder `base` whose bitrate starts at, and never exceeds, a cap.

    aiortc keeps the figure in a private attribute that its encode() reads too; the subclass writes that
    attribute so both agree. Receiver reports may still lower the bitrate, down to aiortc's floor (or to
    the cap, where the user set it lower still). The floor is read from aiortc's `module` when used.
    """
    private = f"_{base.__name__}__target_bitrate"

    class Capped(base):  # type: ignore[misc, valid-type]
        def __init__(self, max_bps: int, start_bps: Optional[int] = None) -> None:
            super().__init__()
            self.max_bps = max_bps
            # What the path carries now, from the far end's loss reports (calls/network.py: PathFollower);
            # aiortc itself only follows REMB, which a bottleneck that drops rather than queues never moves.
            self.path_cap_bps: Optional[int] = None
            self.requested_bps = int(start_bps or max_bps)  # the start, then the far end's latest REMB
            setattr(self, private, min(self.requested_bps, max_bps))

        @property
        def target_bitrate(self) -> int:
            return getattr(self, private)

        @target_bitrate.setter
        def target_bitrate(self, bitrate: int) -> None:
            self.requested_bps = int(bitrate)
            rate = min(max(bitrate, module.MIN_BITRATE), self.max_bps)
            if self.path_cap_bps is not None:
                rate = min(rate, self.path_cap_bps)
            setattr(self, private, int(rate))

        def cap_to(self, bps: Optional[int]) -> None:
            """Hold the bitrate at or below `bps` (None: no path limit); takes effect at the next frame."""
            self.path_cap_bps = None if bps is None else int(bps)
            self.target_bitrate = self.requested_bps

    Capped.__name__ = Capped.__qualname__ = f"Capped{base.__name__}"
    Capped.private_attribute = private
    return Capped


CappedVp8Encoder = _capped(Vp8Encoder, vpx)
CappedH264Encoder = _capped(H264Encoder, h264)

def _get_encoder(codec):
    tuning = _patch.settings_or(SendTuning())
    mime = codec.mimeType.lower()
    if mime == "audio/opus":
        return LowDelayOpusEncoder(tuning.opus_frame_ms, tuning.opus_fec_loss_pct)
    if mime in ("video/vp8", "video/h264"):
        cls, module = (CappedVp8Encoder, vpx) if mime == "video/vp8" else (CappedH264Encoder, h264)
        if tuning.video_kbps is not None:
            return cls(tuning.video_kbps * 1000)
        return cls(module.MAX_BITRATE, module.DEFAULT_BITRATE)  # aiortc's own range, plus a path cap
    return aiortc_get_encoder(codec)


def _requires() -> list[str]:
    """Every aiortc internal the encoders above rely on that this aiortc lacks (empty: the patch fits)."""
    missing = lacks_parameters(aiortc_get_encoder, "codec")  # senders call get_encoder(codec)
    opus = OpusEncoder()  # Opus: options set on its codec before it opens; its resampler sets the frame
    missing += lacks(opus, "codec", "resampler") + (lacks(opus.codec, "options", "bit_rate")
                                                     if hasattr(opus, "codec") else [])
    for base, capped, module in ((Vp8Encoder, CappedVp8Encoder, vpx), (H264Encoder, CappedH264Encoder, h264)):
        missing += lacks(module, "MIN_BITRATE", "MAX_BITRATE", "DEFAULT_BITRATE") + lacks(base(), capped.private_attribute)
        if not isinstance(getattr(base, "target_bitrate", None), property):
            missing.append(f"{base.__name__}.target_bitrate (a property)")
    return missing


_patch: NamePatch[SendTuning] = NamePatch(
    _sender, "get_encoder", aiortc_get_encoder, _get_encoder, _requires,
    "aiortc's sender is not the one calls/encoders.py was written for: send tuning skipped (20 ms Opus "
    "frames, aiortc's video bitrate)")


def tune_senders(tuning: SendTuning = SendTuning()) -> Optional[SendTuning]:
    """Make aiortc senders that build their encoder from now on use `tuning` (idempotent).

    Returns the settings in force, or None when this aiortc lacks what the patch relies on (it is then left
    as it is: 20 ms Opus frames, which costs latency but nothing else).
    """
    return _patch.apply(tuning)


def restore_senders() -> None:
    """Give senders built from now on aiortc's own encoders again (idempotent)."""
    _patch.restore()


def current_send_tuning() -> Optional[SendTuning]:
    """The settings senders are built with now, or None for aiortc's own encoders."""
    return _patch.current()
