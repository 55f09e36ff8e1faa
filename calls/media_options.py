"""What the operator can choose about the media a call sends and receives, and where each choice acts.

- codec: the video codec the answer prefers, through aiortc's setCodecPreferences (the far end's offer must
  carry it; else the far end's first choice is kept and the operator is told which one runs);
- size and fps: the picture sent, scaled and thinned by the outgoing video track;
- video_kbps: where the video encoder's bitrate starts and how high receiver reports may take it;
- audio_frame_ms: Opus packet length (10 ms: lowest delay; 20 ms: half the packets);
- audio_prefetch: packets the receive side holds back before playing the far end's voice (0-15).
The send-side settings reach aiortc through calls/encoders.py, the receive side through calls/transport.py.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from typing import Optional

from aiortc import RTCPeerConnection, RTCRtpSender

from calls.encoders import OPUS_FRAME_MS, SendTuning, tune_senders
from calls.transport import AUDIO_CAPACITY, tune_receivers
from engine.errors import EvercallError

log = logging.getLogger(__name__)

VIDEO_CODECS = ("vp8", "h264")


@dataclass(frozen=True)
class MediaOptions:
    codec: str = "vp8"
    size: Optional[tuple[int, int]] = None  # None: as the camera delivers it
    fps: Optional[float] = None  # None: every frame the camera delivers
    video_kbps: Optional[int] = None  # None: aiortc's start (500 kbit/s VP8, 1 Mbit/s H.264)
    audio_frame_ms: int = 10
    audio_prefetch: int = 1
    audio_fec_pct: int = 0  # expected loss for Opus in-band FEC (0: off, lowest delay; see calls/encoders.py)

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise EvercallError(f"unknown video codec {self.codec!r}: use one of {', '.join(VIDEO_CODECS)}")
        if self.size is not None and not all(16 <= v <= 4096 and v % 2 == 0 for v in self.size):
            raise EvercallError(f"video size {self.size[0]}x{self.size[1]} is not usable: give even "
                                "numbers from 16 to 4096, e.g. --video-size 1280x720")
        if self.fps is not None and not 1 <= self.fps <= 60:
            raise EvercallError(f"--fps must be 1-60, not {self.fps:g}")
        if not 0 <= self.audio_prefetch < AUDIO_CAPACITY:
            raise EvercallError(f"--audio-prefetch must be 0-{AUDIO_CAPACITY - 1} packets, not {self.audio_prefetch}")
        try:
            self.send_tuning()
        except ValueError as exc:
            raise EvercallError(str(exc)) from exc

    def send_tuning(self) -> SendTuning:
        return SendTuning(opus_frame_ms=self.audio_frame_ms, video_kbps=self.video_kbps,
                          opus_fec_loss_pct=self.audio_fec_pct)

    @property
    def audio_frame_samples(self) -> int:
        return self.send_tuning().opus_frame_samples

    def apply_to_aiortc(self) -> None:
        """Encoders and jitter buffers built from now on follow these options (both patches idempotent)."""
        tune_senders(self.send_tuning())
        tune_receivers(audio_prefetch=self.audio_prefetch)

    def describe(self) -> dict:
        """The options as the operator console shows them."""
        return {"codec": self.codec, "size": None if self.size is None else f"{self.size[0]}x{self.size[1]}",
                "fps": self.fps, "video_kbps": self.video_kbps, "audio_frame_ms": self.audio_frame_ms,
                "audio_prefetch": self.audio_prefetch}


def prefer_video_codec(pc: RTCPeerConnection, offer_sdp: str, codec: str) -> None:
    """Make the answer `pc` gives to `offer_sdp` prefer `codec` for video; call before setRemoteDescription.

    An answerer sends the first codec of its answer, and aiortc settles an answer's codecs when the remote
    description is set, from the preferences of the transceiver that takes the offer's video: so a video
    transceiver is made here, as aiortc itself would make it (receive-only until a track is added), with
    `codec` first and aiortc's other codecs (RTX included) after it. When the offer lacks `codec` the far
    end's first choice that aiortc knows is kept: `answered_video_codec` then says which one runs.
    """
    if not re.search(r"^m=video ", offer_sdp, re.M):
        return  # no video offered: make nothing the far end did not ask for
    available = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in available if c.mimeType.lower() == f"video/{codec}"]
    pc.addTransceiver("video", direction="recvonly").setCodecPreferences(
        wanted + [c for c in available if c not in wanted])


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720), for argparse."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    return int(m.group(1)), int(m.group(2))


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("media sent and received (defaults favour low delay on a LAN)")
    group.add_argument("--codec", default="vp8", choices=VIDEO_CODECS,
                       help="video codec to prefer (default vp8; the far end's browser must offer it)")
    group.add_argument("--video-size", type=parse_size, metavar="WxH",
                       help="scale the picture sent to this size, e.g. 1280x720 (default: as captured)")
    group.add_argument("--fps", type=float, help="send at most this many frames a second (default: as captured)")
    group.add_argument("--video-kbps", type=int, metavar="KBPS",
                       help="video bitrate to start at and never exceed (default: 500 for vp8, 1000 for h264; "
                            "the far end's reports may lower it)")
    group.add_argument("--audio-frame-ms", type=int, default=10, choices=OPUS_FRAME_MS,
                       help="Opus packet length: 10 ms halves the voice's packing delay (default), 20 ms halves "
                            "the packet count")
    group.add_argument("--audio-prefetch", type=int, default=1, metavar="N",
                       help="far-end voice packets to hold back before playing them: 0 plays each on arrival, "
                            "1 (default) absorbs one packet of reordering, 3-4 suit a lossy Wi-Fi link")
    group.add_argument("--audio-fec", type=int, default=0, metavar="PCT",
                       help="expected packet loss in %% on the far end's path: above 0 the voice carries Opus "
                            "in-band FEC (a lost packet is rebuilt, not concealed) for 4 ms more delay; "
                            "5 suits home Wi-Fi or 4G (default 0: off)")


def media_options_from_args(args: argparse.Namespace) -> MediaOptions:
    return MediaOptions(codec=args.codec, size=args.video_size, fps=args.fps, video_kbps=args.video_kbps,
                        audio_frame_ms=args.audio_frame_ms, audio_prefetch=args.audio_prefetch,
                        audio_fec_pct=args.audio_fec)


def answered_video_codec(sdp: str) -> Optional[str]:
    """The video codec an SDP answer settled on (its video section's first payload type), e.g. 'vp8'."""
    video = re.search(r"^m=video \S+ \S+ (\d+)", sdp, re.M)
    if not video:
        return None
    name = re.search(rf"^a=rtpmap:{video.group(1)} ([^/\s]+)/", sdp, re.M)
    return name.group(1).lower() if name else None
