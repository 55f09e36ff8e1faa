"""The relay's web server: the far-end page and its WebRTC offer, and a small operator page.

Routes
  GET  /join/{token}            far-end page (plays the persona, sends the far end's camera and mic)
  POST /join/{token}/offer      SDP offer in, answer out (aiortc)
  POST /join/{token}/report     the far-end page's own WebRTC figures, shown to the operator
  GET  /operator/{token}        operator page: outgoing preview, the far end, live figures
  GET  /operator/{token}/preview.mjpg | farend.mjpg | stats.json
  GET  /operator/{token}/ws     WebSocket: live figures out, console controls in (calls/console.py)

  POST /operator/{token}/invite/revoke | invite/renew   withdraw the far-end link, or issue a new one

A wrong, expired or withdrawn token gets 403 and a plain page. One far end at a time: the browser that
joined keeps the call (a reload of it replaces its old connection); another browser gets 409 meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from importlib import resources

import cv2
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from calls.console import Controls, CpuMeter, figures
from calls.ice import rtc_configuration
from calls.media_options import MediaOptions, answered_video_codec, prefer_codec
from calls.invites import FAREND_COOKIE, FarEndSeat, Invite, new_token
from calls.tracks import PersonaAudioTrack, PersonaVideoTrack, consume_audio, consume_video
from engine.media import VideoFrame
from engine.pipeline import AUDIO_RATE, CallPipeline
from engine.stages import AudioRing, LatestSlot

log = logging.getLogger(__name__)
MJPEG_BOUNDARY = "evercallframe"


@functools.cache
def _page(name: str) -> str:
    """A page template from calls/static, read once per process."""
    return resources.files("calls").joinpath("static", name).read_text(encoding="utf-8")


@dataclass
class CallState:
    """What the server shares with the rest of the call: the pipeline and the far end's media."""

    pipeline: CallPipeline
    persona_name: str
    invite: Invite = field(default_factory=Invite)
    seat: FarEndSeat = field(default_factory=FarEndSeat)
    operator_token: str = field(default_factory=new_token)
    farend_video: LatestSlot[VideoFrame] = field(default_factory=LatestSlot)
    farend_audio: AudioRing = field(default_factory=lambda: AudioRing(AUDIO_RATE, capacity_s=0.3))
    peer: RTCPeerConnection | None = None
    peer_tasks: list[asyncio.Task] = field(default_factory=list)
    source_error: str | None = None
    farend_report: dict | None = None  # the far end's own figures (frames decoded, fps), for the operator
    persona_id: str = ""
    call_id: str = ""  # names this call in the audit log and in the output's watermark
    mode: str = "swap"
    audit: Any = None  # engine.audit.AuditLog, or None to record nothing
    media: MediaOptions = field(default_factory=MediaOptions)
    sending_codec: str | None = None  # the video codec the far end accepted, once a call is answered

    def record(self, event: str, **fields: Any) -> None:
        """Append to the audit log without letting a logging failure end the call."""
        if self.audit is None:
            return
        try:
            self.audit.append(event, persona=self.persona_id, call=self.call_id, **fields)
        except Exception:
            log.exception("could not write the audit record %s", event)


def refused(reason: str, status: int = 403) -> web.Response:
    body = _page("refused.html").replace("{reason}", html.escape(reason))
    return web.Response(status=status, text=body, content_type="text/html")


class CallServer:
    """aiohttp application for one operator and one far end at a time."""

    def __init__(self, state: CallState, controls: Controls | None = None) -> None:
        self.state = state
        self.controls = controls or Controls(state, None, None)
        self._closing = False  # set on shutdown: long-lived streams (MJPEG, console sockets) end promptly
        self._sockets: set[web.WebSocketResponse] = set()
        self.app = web.Application()
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/join/{token}", self.join_page),
            web.post("/join/{token}/offer", self.offer),
            web.post("/join/{token}/report", self.farend_report),
            web.get("/operator/{token}", self.operator_page),
            web.get("/operator/{token}/preview.mjpg", self.preview_stream),
            web.get("/operator/{token}/farend.mjpg", self.farend_stream),
            web.get("/operator/{token}/stats.json", self.stats),
            web.get("/operator/{token}/ws", self.console_socket),
            web.post("/operator/{token}/invite/revoke", self.revoke_invite),
            web.post("/operator/{token}/invite/renew", self.renew_invite),
        ])
        self.app.on_shutdown.append(self._on_shutdown)

    # -- pages ---------------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text="evercall is running. Open the link printed in the terminal.\n")

    def _join_refusal(self, request: web.Request) -> web.Response | None:
        """A 403 page when the link's token is wrong, expired or withdrawn; None when it is good."""
        reason = self.state.invite.check(request.match_info["token"])
        return refused(reason) if reason else None

    def _operator_ok(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.match_info["token"], self.state.operator_token)

    async def join_page(self, request: web.Request) -> web.Response:
        if (refusal := self._join_refusal(request)) is not None:
            return refusal
        resp = web.Response(text=_page("join.html"), content_type="text/html",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        if FAREND_COOKIE not in request.cookies:
            resp.set_cookie(FAREND_COOKIE, new_token(), httponly=True, samesite="Strict",
                            secure=request.secure, path="/join/")
        return resp

    async def operator_page(self, request: web.Request) -> web.Response:
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        base = f"/operator/{self.state.operator_token}"
        join_url = f"{request.scheme}://{request.host}/join/{self.state.invite.token}"
        text = (_page("operator.html").replace("{base}", base).replace("{join_url}", html.escape(join_url))
                .replace("{persona}", html.escape(self.state.persona_name)))
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def stats(self, request: web.Request) -> web.Response:
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        body = self.state.pipeline.stats()
        body["far_end_connected"] = self.state.peer is not None and self.state.peer.connectionState == "connected"
        body["source_error"] = self.state.source_error
        body["far_end_report"] = self.state.farend_report
        body["invite"] = self.state.invite.describe()
        return web.json_response(body)

    async def farend_report(self, request: web.Request) -> web.Response:
        """The far-end page posts what its browser measures (WebRTC stats), so the operator sees it too."""
        if (refusal := self._join_refusal(request)) is not None:
            return refusal
        if (request.content_length or 0) > 64_000:
            return web.Response(status=413, text="report too large")
        try:
            report = await request.json()
        except (json.JSONDecodeError, ValueError):
            return web.Response(status=400, text="bad report: expected JSON")
        if not isinstance(report, dict):
            return web.Response(status=400, text="bad report: expected a JSON object")
        report["received_at"] = time.time()
        self.state.farend_report = report
        return web.Response(status=204)

    async def console_socket(self, request: web.Request) -> web.StreamResponse:
        """Push figures twice a second; apply the console's commands as they come."""
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self._sockets.add(ws)
        cpu = CpuMeter()

        async def push() -> None:
            while not ws.closed:
                await ws.send_json({"type": "figures", **figures(self.state, cpu)})
                await asyncio.sleep(0.5)

        pusher = asyncio.ensure_future(push())
        try:
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                try:
                    command = json.loads(msg.data)
                except json.JSONDecodeError:
                    await ws.send_json({"type": "result", "ok": False, "message": "commands are JSON"})
                    continue
                result = await self.controls.apply(command if isinstance(command, dict) else {})
                await ws.send_json({"type": "result", **result})
        finally:
            pusher.cancel()
            self._sockets.discard(ws)
        return ws

    async def revoke_invite(self, request: web.Request) -> web.Response:
        """Withdraw the far-end link: new joins are refused; a call in progress is ended."""
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        self.state.invite.revoked = True
        await self.close_peer()
        return web.json_response(self.state.invite.describe())

    async def renew_invite(self, request: web.Request) -> web.Response:
        """Issue a new far-end link (the old one stops working) and return it."""
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        self.state.invite = self.state.invite.renewed()
        await asyncio.to_thread(self.state.record, "invite_created",  # fsync: off the event loop
                                expires=self.state.invite.describe()["expires_at"])
        url = f"{request.scheme}://{request.host}/join/{self.state.invite.token}"
        return web.json_response({"join_url": url, **self.state.invite.describe()})

    # -- MJPEG previews for the operator -------------------------------------------------------------
    async def _mjpeg(self, request: web.Request, slot: LatestSlot[VideoFrame]) -> web.StreamResponse:
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        version = 0
        try:
            while not self._closing:
                version, item = await slot.wait_newer(version, timeout=0.5)
                if item is None:
                    continue
                ok, jpg = await asyncio.to_thread(cv2.imencode, ".jpg", item.image, [cv2.IMWRITE_JPEG_QUALITY, 70])
                if not ok:
                    continue
                await resp.write(f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg.tobytes() + b"\r\n")
                await asyncio.sleep(1 / 15)  # the operator's preview needs no more than 15 fps
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def preview_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._mjpeg(request, self.state.pipeline.video_out)

    async def farend_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._mjpeg(request, self.state.farend_video)

    # -- WebRTC --------------------------------------------------------------------------------------
    async def offer(self, request: web.Request) -> web.Response:
        if (refusal := self._join_refusal(request)) is not None:
            return refusal
        browser = request.cookies.get(FAREND_COOKIE) or new_token()  # no cookie: a stranger every time
        peer = self.state.peer
        if not self.state.seat.admit(browser, peer is not None and peer.connectionState in ("new", "connecting",
                                                                                             "connected")):
            return refused("Someone is already in this call. Only one person can join at a time.", status=409)
        try:
            params = await request.json()
            offer = RTCSessionDescription(sdp=params["sdp"], type=params["type"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.Response(status=400, text="bad offer: expected JSON with 'sdp' and 'type'")
        await self.close_peer()
        media = self.state.media
        media.apply_to_aiortc()  # encoders and jitter buffers of the connection built next
        sdp, has_codec = prefer_codec(offer.sdp, "video", media.codec)
        if not has_codec and "m=video" in sdp:
            log.warning("the far end does not offer %s video: using its first choice", media.codec)
        offer = RTCSessionDescription(sdp=sdp, type=offer.type)
        pc = RTCPeerConnection(rtc_configuration())
        self.state.peer = pc

        @pc.on("track")
        def on_track(track) -> None:
            consumer = consume_video(track, self.state.farend_video) if track.kind == "video" \
                else consume_audio(track, self.state.farend_audio)
            self.state.peer_tasks.append(asyncio.ensure_future(consumer))

        started: list[float] = []
        far_end = request.remote or "unknown"

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("far end %s: %s", far_end, pc.connectionState)
            if pc.connectionState == "connected" and not started:
                started.append(time.monotonic())
                await asyncio.to_thread(self.state.record, "call_started", far_end=far_end)
            elif pc.connectionState in ("failed", "closed"):
                self.state.seat.release(browser)
                if started:
                    await asyncio.to_thread(self.state.record, "call_ended", far_end=far_end,
                                            duration_s=round(time.monotonic() - started.pop(), 1))
            if pc.connectionState == "failed":
                await pc.close()

        try:
            await pc.setRemoteDescription(offer)
            offered = {t.kind for t in pc.getTransceivers()}  # answer only the media the far end asked for
            pipeline = self.state.pipeline
            if "video" in offered:
                pc.addTrack(PersonaVideoTrack(pipeline.video_out, pipeline.note_video_sent, size=media.size,
                                              max_fps=media.fps))
            if "audio" in offered:
                pc.addTrack(PersonaAudioTrack(pipeline.audio_out, pipeline.note_audio_sent,
                                              frame=media.audio_frame_samples))
            await pc.setLocalDescription(await pc.createAnswer())
            self.state.sending_codec = answered_video_codec(pc.localDescription.sdp)
        except Exception as exc:  # a malformed SDP must not take the server down
            await self.close_peer()
            return web.Response(status=400, text=f"cannot use this offer: {exc}")
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def close_peer(self) -> None:
        pc, self.state.peer = self.state.peer, None
        for task in self.state.peer_tasks:
            task.cancel()
        self.state.peer_tasks.clear()
        if pc is not None:
            await pc.close()

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing = True
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"call ended")
        await self.close_peer()

