"""The operator console's live side: figures pushed over a WebSocket, and the controls it sends back.

Controls: mute the voice, a "one moment" card that replaces picture and voice at once, switching the face
mode, and ending the call. Figures: send delays of video and audio, A/V skew, frames out per second,
drops, what the far end's browser reports (frames decoded, its jitter buffer), and this process's CPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

import cv2
import numpy as np

from calls.network import link_figures
from calls.schema import BadMessage, console_command

log = logging.getLogger(__name__)


def one_moment_card(width: int = 640, height: int = 480, text: str = "One moment, please") -> np.ndarray:
    """A calm full-frame card (soft gradient, centred text) shown instead of the persona."""
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([92, 78, 64], np.float32), np.array([60, 48, 40], np.float32)
    card = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_DUPLEX, height / 480 * 1.1, max(1, round(height / 240))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    cv2.putText(card, text, ((width - tw) // 2, (height + th) // 2), font, scale, (235, 235, 235), thick,
                cv2.LINE_AA)
    return card


class CpuMeter:
    """This process's CPU use in percent of one core, between successive readings."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        (w0, c0), self._last = self._last, (wall, cpu)
        return round(100.0 * (cpu - c0) / max(wall - w0, 1e-6), 1)


class Controls:
    """What the console's buttons do, applied to one call's state."""

    def __init__(self, state: Any, rebuild_face: Callable[[str], Any] | None,
                 end_call: Callable[[], Any] | None) -> None:
        self.state = state
        self._rebuild_face = rebuild_face
        self._end_call = end_call

    async def apply(self, command: Any) -> dict:
        """Carry out one command; returns {"ok": bool, "message": str}. A malformed one changes nothing."""
        try:
            command = console_command(command)
        except BadMessage as exc:
            return {"ok": False, "message": str(exc)}
        action = command["action"]
        pipeline = self.state.pipeline
        if action == "mute":
            pipeline.muted = command["on"]
            return {"ok": True, "message": "voice muted" if pipeline.muted else "voice on"}
        if action == "card":
            if command["on"]:
                frame = pipeline.video_out.peek()[1]
                h, w = frame.image.shape[:2] if frame is not None else (480, 640)
                pipeline.card = one_moment_card(w, h)
            else:
                pipeline.card = None
            return {"ok": True, "message": "'one moment' card shown" if pipeline.card is not None else "card off"}
        if action == "mode":
            mode = command["mode"]
            if self._rebuild_face is None:
                return {"ok": False, "message": "switching the face mode is not available in this call"}
            try:
                face = await asyncio.to_thread(self._rebuild_face, mode)
            except Exception as exc:  # a bad mode or photo must not end the call
                return {"ok": False, "message": f"cannot switch to {mode}: {exc}"}
            pipeline.set_face(face)
            self.state.mode = mode
            return {"ok": True, "message": f"face mode: {mode}"}
        if action == "end":
            if self._end_call is not None:
                await self._end_call()
            return {"ok": True, "message": "call ended"}
        return {"ok": False, "message": f"unknown action {action!r}"}  # the schema knows no other


def figures(state: Any, cpu: CpuMeter) -> dict:
    """One snapshot for the console."""
    stats = state.pipeline.stats()
    report = state.farend_report or {}
    peer = state.peer
    return {
        "time": time.time(),
        "far_end_connected": peer is not None and peer.connectionState == "connected",
        "mode": getattr(state, "mode", None),
        "muted": state.pipeline.muted,
        "card": state.pipeline.card is not None,
        "fps_out": stats.get("fps_out"),
        "av": stats.get("av"),
        "face": stats.get("face"),
        "voice": stats.get("voice"),
        "audio": stats.get("audio"),
        "far_end": {k: report.get(k) for k in ("video", "audio", "connectionState") if k in report},
        "far_end_link": link_figures(state.farend_report),  # "her connection is weak", with the figures
        "cpu_percent": cpu.read(),
        "cpu_cores": os.cpu_count(),
        "invite": state.invite.describe(),
        "source_error": state.source_error,
        "media": {**state.config.media.describe(), "codec_in_use": state.sending_codec},
    }
