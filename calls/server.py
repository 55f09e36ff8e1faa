"""The relay's web server: the far-end page and its WebRTC offer, and a small operator page.

Routes
  GET  /join/{token}            far-end page (plays the persona, sends the far end's camera and mic)
  POST /join/{token}/offer      SDP offer in, answer out (aiortc)
  POST /join/{token}/report     the far-end page's own WebRTC figures, shown to the operator
  POST /join/{token}/viewport   the far-end screen's shape (CSS px), on joining and on rotation: the picture is framed to it
  GET  /operator/{token}        operator page: outgoing preview, the far end, live figures
  GET  /operator/{token}/preview.mjpg | farend.mjpg | stats.json
  GET  /operator/{token}/notes.json   the operator's private notes on the persona (never on a /join/ route)
  GET  /operator/{token}/ws     WebSocket: live figures out, console controls in (calls/console.py)

  POST /operator/{token}/invite/revoke | invite/renew   withdraw the far-end link, or issue a new one

  GET  /static/{name}.js|.css     the pages' scripts and styles (no page carries inline code)

A wrong, expired or withdrawn token gets 403 and a plain page. One far end at a time: the browser that
joined keeps the call (a reload of it replaces its old connection); another browser gets 409 meanwhile.
The seat is a state machine with timeouts (calls/invites.py): an offer that never connects, or a far end
that goes silent, frees it within seconds.

Everything a browser sends is checked against calls/schema.py before it is used; one error boundary turns
any bad request into a 4xx with one line of text, never a 500. Every response carries a strict
Content-Security-Policy (no inline script), `Referrer-Policy: no-referrer`, `Cache-Control: no-store`
(the URLs hold tokens) and `X-Content-Type-Options: nosniff`; the operator's WebSocket and POSTs refuse
a foreign `Origin`.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from importlib import resources

import cv2
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from calls import schema
from calls.console import Controls, CpuMeter, figures
from calls.framing import FaceFramer
from calls.network import HOLD_MAX_MS, PathFollower, VoiceHold, link_figures, video_bitrate
from calls.ice import rtc_configuration
from calls.media_options import MediaOptions, answered_video_codec, prefer_video_codec
from calls.invites import FAREND_COOKIE, FarEndSeat, Invite, new_token
from calls.tracks import PersonaAudioTrack, PersonaVideoTrack, consume_audio, consume_video
from engine.errors import EvercallError
from engine.media import VideoFrame
from engine.pipeline import AUDIO_RATE, CallPipeline
from engine.stages import AudioRing, LatestSlot

log = logging.getLogger(__name__)
MJPEG_BOUNDARY = "evercallframe"
WATCH_INTERVAL_S = 0.25  # how often the seat's watchdog looks at a far end that has not connected
STRICT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
              "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
              "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
                    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Cross-Origin-Opener-Policy": "same-origin"}
_STATIC_NAME = re.compile(r"^[a-z0-9_-]{1,40}\.(js|css)$")


@functools.cache
def _page(name: str) -> str:
    """A page template from calls/static, read once per process."""
    return resources.files("calls").joinpath("static", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class CallConfig:
    """What a call is, fixed when it starts: whose likeness, how it was assembled, what goes over the wire,
    the operator's key and notes. Nothing here changes while the call runs."""

    persona_name: str
    assembly: Any = None  # calls.assembly.CallAssembly: the call's id, filters and audit records (None: none)
    media: MediaOptions = field(default_factory=MediaOptions)
    operator_token: str = field(default_factory=new_token)
    persona_notes: str = ""  # the operator's private notes: served only with the operator's token
    admit: Callable[[], None] | None = None  # asked before each new far end: raises EvercallError when the
    # persona may no longer be used (a next of kin revoked, an objection was filed) since the call began


@dataclass
class CallState:
    """What changes during a call, shared by the server, the console and serve: the pipeline, the invite and
    seat, the far end's connection and media, the face mode in use."""

    pipeline: CallPipeline
    config: CallConfig
    invite: Invite = field(default_factory=Invite)
    seat: FarEndSeat = field(default_factory=FarEndSeat)
    farend_video: LatestSlot[VideoFrame] = field(default_factory=LatestSlot)
    farend_audio: AudioRing = field(default_factory=lambda: AudioRing(AUDIO_RATE, capacity_s=0.3))
    peer: RTCPeerConnection | None = None
    peer_tasks: list[asyncio.Task] = field(default_factory=list)
    source_error: str | None = None
    farend_report: dict | None = None  # the far end's own figures (frames decoded, fps), for the operator
    mode: str = "swap"  # the face mode in use now (the console can switch it)
    sending_codec: str | None = None  # the video codec the far end accepted, once a call is answered
    voice_hold: VoiceHold | None = None  # how long the voice waits for her picture (lossy paths), this call
    voice_hold_max_ms: float = HOLD_MAX_MS  # the call's bound for every connection's hold (0: off), kept on reconnect

    def record(self, event: str, **fields: Any) -> None:
        """Append to the call's audit log (CallAssembly.record); a logging failure never ends the call."""
        if self.config.assembly is not None:
            self.config.assembly.record(event, **fields)


def bad_request(message: str, status: int = 400) -> web.Response:
    """One line of plain text: what was wrong with the request."""
    return web.Response(status=status, text=" ".join(message.split())[:300] + "\n")


@web.middleware
async def error_boundary(request: web.Request, handler) -> web.StreamResponse:
    """Any failure while serving a request is the request's fault or ours, never a reason for a 500 page
    that leaks a traceback: a malformed message is a 400 that says what was wrong, anything else a 400
    that names only the error's type (the details go to the log)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except schema.BadMessage as exc:
        return bad_request(str(exc))
    except Exception as exc:
        log.warning("request %s %s failed", request.method, request.rel_url.path, exc_info=True)
        return bad_request(f"bad request ({exc.__class__.__name__})")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    response.headers.setdefault("Content-Security-Policy", STRICT_CSP)


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
        self.framer = FaceFramer()  # the far end's screen shape; outlives a reconnect (calls/framing.py)
        self._watchdog: asyncio.Task | None = None
        self.app = web.Application(middlewares=[error_boundary], client_max_size=schema.MAX_OFFER_BYTES)
        self.app.on_response_prepare.append(_security_headers)
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/static/{name}", self.static_file),
            web.get("/join/{token}", self.join_page),
            web.post("/join/{token}/offer", self.offer),
            web.post("/join/{token}/report", self.farend_report),
            web.post("/join/{token}/viewport", self.farend_viewport),
            web.get("/operator/{token}", self.operator_page),
            web.get("/operator/{token}/preview.mjpg", self.preview_stream),
            web.get("/operator/{token}/farend.mjpg", self.farend_stream),
            web.get("/operator/{token}/stats.json", self.stats),
            web.get("/operator/{token}/notes.json", self.notes),
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
        """The operator token matches (compared as bytes: any text in the URL is a plain mismatch)."""
        token = request.match_info["token"].encode("utf-8", "replace")
        return secrets.compare_digest(token, self.state.config.operator_token.encode())

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """A browser always names the page that sent a request; only this server's own pages may."""
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    def _operator_refusal(self, request: web.Request) -> web.Response | None:
        if not self._operator_ok(request):
            return refused("The operator code in this link is wrong.")
        if request.method != "GET" or request.path.endswith("/ws"):
            if not self._same_origin(request):
                return refused("This request came from another site.")
        return None

    @staticmethod
    async def _body(request: web.Request, what: str, limit: int) -> object:
        """The request's JSON, read only up to `limit` bytes and checked for depth (schema.BadMessage)."""
        if (request.content_length or 0) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                                text=f"{what} is over {limit} bytes\n")
        raw = await request.content.read(limit + 1)
        return schema.parse_json(raw, what, limit)

    async def static_file(self, request: web.Request) -> web.Response:
        """A page's script or style from calls/static (only .js and .css by plain names)."""
        name = request.match_info["name"]
        if not _STATIC_NAME.match(name) or not resources.files("calls").joinpath("static", name).is_file():
            raise web.HTTPNotFound(text="no such file\n")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return web.Response(text=_page(name), content_type=kind)

    async def join_page(self, request: web.Request) -> web.Response:
        if (refusal := self._join_refusal(request)) is not None:
            return refusal
        resp = web.Response(text=_page("join.html"), content_type="text/html")
        if FAREND_COOKIE not in request.cookies:
            resp.set_cookie(FAREND_COOKIE, new_token(), httponly=True, samesite="Strict",
                            secure=request.secure, path="/join/")
        return resp

    async def operator_page(self, request: web.Request) -> web.Response:
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
        base = f"/operator/{self.state.config.operator_token}"
        join_url = f"{request.scheme}://{request.host}/join/{self.state.invite.token}"
        text = (_page("operator.html").replace("{base}", base).replace("{join_url}", html.escape(join_url))
                .replace("{persona}", html.escape(self.state.config.persona_name)))
        return web.Response(text=text, content_type="text/html")

    async def notes(self, request: web.Request) -> web.Response:
        """The persona's notes for the operator page (calls/static/notes.js renders them as text)."""
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
        return web.json_response({"notes": self.state.config.persona_notes})

    async def stats(self, request: web.Request) -> web.Response:
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
        body = self.state.pipeline.stats()
        body["far_end_connected"] = self.state.peer is not None and self.state.peer.connectionState == "connected"
        body["source_error"] = self.state.source_error
        body["far_end_report"] = self.state.farend_report
        body["far_end_link"] = link_figures(self.state.farend_report)  # "her connection is weak" + figures
        body["voice_hold"] = None if self.state.voice_hold is None else self.state.voice_hold.figures()
        body["invite"] = self.state.invite.describe()
        body["seat"] = self.state.seat.state
        return web.json_response(body)

    async def farend_report(self, request: web.Request) -> web.Response:
        """The far-end page posts what its browser measures (WebRTC stats), so the operator sees it too."""
        if (refusal := self._join_refusal(request)) is not None:
            return refusal
        try:
            report = schema.farend_report(await self._body(request, "the report", schema.MAX_JSON_BYTES))
        except schema.BadMessage as exc:
            return bad_request(f"bad report: {exc}")
        browser = request.cookies.get(FAREND_COOKIE)
        if browser is None or browser != self.state.seat.holder:
            return bad_request("this browser is not in the call", status=409)
        self.state.seat.heard(browser_id=browser)
        report["received_at"] = time.time()
        self.state.farend_report = report
        if self.state.voice_hold is not None:  # the picture's lag behind the voice at her end, if measured
            self.state.voice_hold.report((report.get("video") or {}).get("behindVoiceMs"))
        return web.Response(status=204)

    async def farend_viewport(self, request: web.Request) -> web.Response:
        """The far end's screen shape (CSS px), on joining and on each rotation: the picture is framed to it."""
        if (refusal := self._join_refusal(request)) is not None:
            return refusal
        shape = await self._body(request, "the viewport", 1000)
        try:
            width, height = shape["width"], shape["height"]  # type: ignore[index]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (width, height)):
                raise TypeError
            aspect = self.framer.set_viewport(float(width), float(height))
        except (KeyError, TypeError, ValueError):
            return bad_request("bad viewport: expected JSON with a positive 'width' and 'height'")
        return web.json_response({"aspect": round(aspect, 4)})

    def _reframe(self, pc: RTCPeerConnection, image, t_capture: float):
        """The picture for the far end's screen (worker thread): framed around the face once her screen's
        shape is known, re-marked since the crop is a new picture; before that, as `--video-size` says."""
        if self.framer.aspect is None:
            size = self.state.config.media.size
            if size is not None and image.shape[1::-1] != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if size[0] < image.shape[1]
                                   else cv2.INTER_LINEAR)
            return image
        framed = self.framer.frame(image, t_capture, bitrate_bps=video_bitrate(pc))
        mark = self.state.pipeline.mark
        return mark(framed, 0) if mark is not None else framed

    async def console_socket(self, request: web.Request) -> web.StreamResponse:
        """Push figures twice a second; apply the console's commands as they come."""
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=schema.MAX_JSON_BYTES)
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
                    command = schema.parse_json(msg.data, "a command")
                    result = await self.controls.apply(command)
                except schema.BadMessage as exc:
                    result = {"ok": False, "message": str(exc)}
                except Exception as exc:  # a failing control must not end the console
                    log.warning("console command failed", exc_info=True)
                    result = {"ok": False, "message": f"the command failed ({exc.__class__.__name__})"}
                await ws.send_json({"type": "result", **result})
        finally:
            pusher.cancel()
            self._sockets.discard(ws)
        return ws

    async def revoke_invite(self, request: web.Request) -> web.Response:
        """Withdraw the far-end link: new joins are refused; a call in progress is ended."""
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
        self.state.invite.revoked = True
        await self.close_peer()
        return web.json_response(self.state.invite.describe())

    async def renew_invite(self, request: web.Request) -> web.Response:
        """Issue a new far-end link (the old one stops working) and return it."""
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
        self.state.invite = self.state.invite.renewed()
        await asyncio.to_thread(self.state.record, "invite_created",  # fsync: off the event loop
                                expires=self.state.invite.describe()["expires_at"])
        url = f"{request.scheme}://{request.host}/join/{self.state.invite.token}"
        return web.json_response({"join_url": url, **self.state.invite.describe()})

    # -- MJPEG previews for the operator -------------------------------------------------------------
    async def _mjpeg(self, request: web.Request, slot: LatestSlot[VideoFrame]) -> web.StreamResponse:
        if (refusal := self._operator_refusal(request)) is not None:
            return refusal
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
        try:  # checked before the seat is touched: a malformed offer cannot hold it
            sdp, kind = schema.offer(await self._body(request, "the offer", schema.MAX_OFFER_BYTES))
        except schema.BadMessage as exc:
            return bad_request(f"bad offer: {exc}")
        if self.state.config.admit is not None:
            try:  # consent may have been revoked, or an objection filed, since the call began
                await asyncio.to_thread(self.state.config.admit)
            except EvercallError as exc:
                log.error("a far end was turned away: %s", exc)
                return refused("This call is no longer available.")
        browser = request.cookies.get(FAREND_COOKIE) or new_token()  # no cookie: a stranger every time
        seat = self.state.seat
        claim = seat.admit(browser)
        if claim is None:
            return refused("Someone is already in this call. Only one person can join at a time.", status=409)
        await self.close_peer(free_seat=False)
        media = self.state.config.media
        media.apply_to_aiortc()  # encoders and jitter buffers of the connection built next
        offer = RTCSessionDescription(sdp=sdp, type=kind)
        pc = RTCPeerConnection(rtc_configuration())
        prefer_video_codec(pc, sdp, media.codec)
        self.state.peer = pc

        @pc.on("track")
        def on_track(track) -> None:
            consumer = consume_video(track, _Heard(self.state.farend_video, "put", seat, claim)) \
                if track.kind == "video" else consume_audio(track, _Heard(self.state.farend_audio, "write", seat,
                                                                          claim))
            self.state.peer_tasks.append(asyncio.ensure_future(consumer))

        started: list[float] = []
        far_end = request.remote or "unknown"

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("far end %s: %s", far_end, pc.connectionState)
            if pc.connectionState == "connected" and not started:
                seat.connected(claim)
                started.append(time.monotonic())
                await asyncio.to_thread(self.state.record, "call_started", far_end=far_end)
            elif pc.connectionState in ("failed", "closed"):
                seat.release(claim)
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
                                              max_fps=media.fps, reframe=functools.partial(self._reframe, pc)))
            if "audio" in offered:
                self.state.voice_hold = (VoiceHold(max_ms=self.state.voice_hold_max_ms) if "video" in offered
                                         else None)  # follows her reports
                pc.addTrack(PersonaAudioTrack(pipeline.audio_out, pipeline.note_audio_sent,
                                              frame=media.audio_frame_samples, hold=self.state.voice_hold))
            await pc.setLocalDescription(await pc.createAnswer())
            self.state.sending_codec = answered_video_codec(pc.localDescription.sdp)
            if self.state.sending_codec not in (None, media.codec):
                log.warning("the far end does not offer %s video: sending %s", media.codec, self.state.sending_codec)
        except Exception as exc:  # a malformed SDP must not take the server down, nor keep the seat
            seat.release(claim)
            if self.state.peer is pc:
                await self.close_peer()
            else:
                await pc.close()
            reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
            return bad_request(f"cannot use this offer: {reason}")
        self._watch(pc, claim)
        self.state.peer_tasks.append(asyncio.ensure_future(PathFollower(pc).run()))  # bitrate under her path
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    def _watch(self, pc: RTCPeerConnection, claim: int) -> None:
        """Keep the seat's clock for one connection: every RTCP receiver report the far end's browser sends
        (about once a second, whether or not it sends media) counts as a sign of life. A connection that
        never connects is closed when its claim lapses; one that went silent only loses the seat, so a far
        end that vanished cannot keep the next one out, while one that was only paused gets it back if
        nobody else joined meanwhile (a newcomer's offer closes the silent connection)."""
        seat = self.state.seat

        async def watch() -> None:
            seen: dict[int, object] = {}
            while self.state.peer is pc and not self._closing:
                await asyncio.sleep(WATCH_INTERVAL_S)
                if pc.connectionState != "connected":
                    if seat.expired(claim) and self.state.peer is pc:
                        log.info("far end did not connect in time: its seat is free again")
                        await self.close_peer()
                        return
                elif await _reported_since(pc, seen):
                    seat.heard(claim)  # also gives a lapsed far end its seat back, if it is still free

        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = asyncio.ensure_future(watch())

    async def close_peer(self, free_seat: bool = True) -> None:
        """End the far end's connection; with `free_seat`, whoever held the seat holds it no more."""
        if free_seat:
            self.state.seat.clear()
        pc, self.state.peer = self.state.peer, None
        self.state.voice_hold = None
        for task in self.state.peer_tasks:
            task.cancel()
        self.state.peer_tasks.clear()
        if pc is not None:
            await pc.close()

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"call ended")
        await self.close_peer()
        self.framer.close()



async def _reported_since(pc: RTCPeerConnection, seen: dict[int, object]) -> bool:
    """True when a sender of `pc` got an RTCP report from the far end since the last look."""
    fresh = False
    for sender in pc.getSenders():
        try:
            stats = await sender.getStats()
        except Exception:  # a sender being torn down has no stats: not a sign of life
            continue
        for item in stats.values():
            if item.type == "remote-inbound-rtp" and seen.get(id(sender)) != item.timestamp:
                seen[id(sender)] = item.timestamp
                fresh = True
    return fresh


class _Heard:
    """A far-end media sink that also tells the seat the far end is still there."""

    def __init__(self, sink: Any, method: str, seat: FarEndSeat, claim: int) -> None:
        self._put, self._seat, self._claim = getattr(sink, method), seat, claim
        setattr(self, method, self._note)

    def _note(self, *args: Any) -> None:
        self._seat.heard(self._claim)
        self._put(*args)
