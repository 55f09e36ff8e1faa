"""What a recorded or forwarded voice goes through, for testing and measuring the voice mark.

Each transform takes and returns mono float32 at 48 kHz (resampling returns 16 kHz), so results can be fed
straight to the detector, which resamples whatever it gets.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from engine.audio_io import resample

RATE = 48000


def codec_round_trip(samples: np.ndarray, codec: str, bitrate: int, rate: int = RATE,
                     options: dict[str, str] | None = None, container: str = "ogg") -> np.ndarray:
    """Encode mono float samples with PyAV's `codec` at `bitrate` and decode them again (float32, `rate`)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = bitrate
        if options:
            stream.options = options
        step = 960
        for start in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[start:start + step].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    parts = []
    with av.open(buf) as src:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in src.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32)


def opus(samples: np.ndarray, bitrate: int, frame_ms: int, application: str = "lowdelay") -> np.ndarray:
    """libopus with `frame_ms` packets: "lowdelay" (CELT only) is how a call sends; "voip" (SILK/hybrid)
    is how a call with loss protection, or a messenger forwarding a recording, would."""
    return codec_round_trip(samples, "libopus", bitrate,
                            options={"frame_duration": str(frame_ms), "application": application})


def mp3(samples: np.ndarray, bitrate: int = 64000) -> np.ndarray:
    return codec_round_trip(samples, "libmp3lame", bitrate, container="mp3")


def to_16k(samples: np.ndarray) -> np.ndarray:
    return resample(samples, RATE, 16000)


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    return (np.asarray(samples, np.float32) * np.float32(10 ** (db / 20))).clip(-1, 1)


TRANSFORMS = {
    "clean": lambda x: x,
    "opus_10ms_24k": lambda x: opus(x, 24000, 10),
    "opus_20ms_24k": lambda x: opus(x, 24000, 20),
    "opus_10ms_64k": lambda x: opus(x, 64000, 10),
    "opus_20ms_64k": lambda x: opus(x, 64000, 20),
    "opus_audio_10ms_24k": lambda x: opus(x, 24000, 10, "audio"),
    "opus_audio_20ms_24k": lambda x: opus(x, 24000, 20, "audio"),
    "opus_voip_10ms_24k": lambda x: opus(x, 24000, 10, "voip"),
    "opus_voip_20ms_24k": lambda x: opus(x, 24000, 20, "voip"),
    "opus_voip_20ms_32k": lambda x: opus(x, 32000, 20, "voip"),
    "resample_16k": to_16k,
    "mp3_64k": mp3,
    "aac_96k_m4a": lambda x: codec_round_trip(x, "aac", 96000, container="mp4"),
    "gain_+3dB": lambda x: gain(x, 3.0),
    "gain_-3dB": lambda x: gain(x, -3.0),
}
TRANSFORM_RATES = {"resample_16k": 16000}
