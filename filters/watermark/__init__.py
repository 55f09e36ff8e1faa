"""Invisible provenance watermark carried by every synthetic frame evercall sends.

Anyone holding the key can later show that a recording is synthetic and which persona and call produced
it: `WatermarkEmbedder(make_payload(persona_id, call_id)).mark(frame, i)` on the way out,
`verify_video(path)` or `detect_frames(frames)` afterwards. See `embed` for the scheme and `coding` for why
unmarked video does not produce false finds.
"""

from filters.watermark.detect import Detector, VerifyReport, WindowResult, detect_frames, verify_video
from filters.watermark.embed import DEFAULT_KEY, WatermarkEmbedder, make_payload

__all__ = [
    "DEFAULT_KEY",
    "Detector",
    "VerifyReport",
    "WatermarkEmbedder",
    "WindowResult",
    "detect_frames",
    "make_payload",
    "verify_video",
]
