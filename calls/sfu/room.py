"""Several far ends in one call through a Janus videoroom (`evercall serve --sfu janus`).

The relay publishes the persona's video and voice once into a private room; each far end's page joins it
through the relay's own routes (the browser never speaks to Janus: the relay passes the SDP on and keeps
the room's PIN and secret to itself). Each far end also publishes its camera and microphone into the room,
and the relay subscribes to each one so the operator sees every far end.

Invitations: each link admits one named far end (the first browser that opens it keeps it; the same
browser may rejoin). Withdrawing a link kicks only that person out of the room and refuses the link from
then on. Without `--sfu` nothing here runs and calls stay peer-to-peer.

Routes (added to the call's server by `SfuRoom.attach`):
  GET  /sfu/join/{token}                  the far end's page
  POST /sfu/join/{token}/subscribe        -> Janus's offer for the persona's feed
  POST /sfu/join/{token}/start            <- the page's answer
  POST /sfu/join/{token}/publish          <- the page's offer for its camera, -> Janus's answer
  POST /sfu/join/{token}/report           the page's own WebRTC figures (and a small snapshot, for tests)
  GET  /operator/{token}/sfu              the operator's room page: every far end, its link, withdraw
  GET  /operator/{token}/sfu/state.json
  POST /operator/{token}/sfu/invite       {"name": ...} -> a new link for one named far end
  POST /operator/{token}/sfu/invite/{id}/revoke
  GET  /operator/{token}/sfu/farend/{id}.mjpg
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from calls import schema
from calls.ice import rtc_configuration
from calls.invites import DEFAULT_TTL_S, FAREND_COOKIE, Invite, new_token
from calls.sfu.janus import JanusError, JanusHandle, JanusServer, JanusSession
from calls.tracks import PersonaAudioTrack, PersonaVideoTrack, consume_video
from engine.media import VideoFrame
from engine.stages import LatestSlot

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[\w .'-]{1,40}$", re.UNICODE)
_SNAPSHOT = re.compile(r"^data:image/jpeg;base64,[A-Za-z0-9+/=]{1,60000}$")
SUBSCRIBE_RETRY_S = 0.5


def _sdp(data: Any, kind: str) -> str:
    """The SDP text of an {"sdp", "type": kind} message (schema.BadMessage when it is not one)."""
    if not isinstance(data, dict) or data.get("type") != kind:
        raise schema.BadMessage(f"expected a JSON object with \"type\": \"{kind}\"")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "\nm=" not in sdp or "\x00" in sdp:
        raise schema.BadMessage(f"the {kind}'s 'sdp' is not a session description with media")
    return sdp


def _report(data: Any) -> dict:
    """A far-end page's figures: a few finite numbers and, optionally, one small JPEG snapshot."""
    if not isinstance(data, dict):
        raise schema.BadMessage("the report must be a JSON object")
    out: dict[str, Any] = {}
    for key in ("framesDecoded", "framesPerSecond", "audioPacketsReceived", "audioLevel", "sentFrames"):
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e12:
            out[key] = value
    snap = data.get("snapshot")
    if isinstance(snap, str) and _SNAPSHOT.match(snap):
        out["snapshot"] = snap
    return out


@dataclass
class FarEnd:
    """One named far end: its link, its browser, its handles in the room and its picture for the operator."""

    name: str
    invite: Invite = field(default_factory=Invite)  # like the peer-to-peer link: token, expiry, withdrawal
    ident: str = field(default_factory=lambda: secrets.token_hex(4))
    browser: str | None = None  # the cookie of the browser that holds this link
    subscriber: JanusHandle | None = None
    publisher: JanusHandle | None = None
    feed: int | None = None  # this far end's own feed id in the room (its camera)
    video: LatestSlot[VideoFrame] = field(default_factory=LatestSlot)
    watcher: RTCPeerConnection | None = None  # the relay's subscription to this far end's camera
    tasks: list[asyncio.Task] = field(default_factory=list)
    report: dict | None = None
    joined_at: float | None = None

    @property
    def token(self) -> str:
        return self.invite.token

    def describe(self, base_url: str) -> dict:
        return {"id": self.ident, "name": self.name, "join_url": f"{base_url}/sfu/join/{self.token}",
                **self.invite.describe(), "joined": self.joined_at is not None and not self.invite.revoked,
                "publishing": self.feed is not None, "report": {k: v for k, v in (self.report or {}).items()
                                                                 if k != "snapshot"}}


class SfuRoom:
    """A call's Janus room: the persona published once, far ends joining through the relay's routes."""

    def __init__(self, janus_url: str | None = None, api_secret: str | None = None) -> None:
        self.janus_url, self.api_secret = janus_url, api_secret
        self.server: JanusServer | None = None  # the Janus that evercall started (None: --sfu-url)
        self.session: JanusSession | None = None
        self.room = secrets.randbelow(2**52) + 1
        self.pin = secrets.token_urlsafe(12)
        self.secret = secrets.token_urlsafe(18)
        self.persona_feed: int | None = None
        self.far_ends: dict[str, FarEnd] = {}  # by token
        self._publisher: JanusHandle | None = None
        self._publisher_pc: RTCPeerConnection | None = None
        self.call: Any = None  # calls.server.CallServer once attached
        self.ready = asyncio.Event()

    # -- room life -----------------------------------------------------------------------------------
    async def open(self, pipeline: Any, media: Any = None) -> "SfuRoom":
        """Start Janus when no URL was given, create the room and publish the persona's tracks into it."""
        if self.janus_url is None:
            self.server = await JanusServer().start()
            self.janus_url, self.api_secret = self.server.url, self.server.api_secret
        self.session = await JanusSession(self.janus_url, self.api_secret).open()
        self._publisher = await self.session.attach()
        create = {"request": "create", "room": self.room, "publishers": 64, "pin": self.pin,
                  "secret": self.secret, "is_private": True, "videocodec": "vp8", "audiocodec": "opus",
                  "bitrate": 1_500_000, "notify_joining": False}
        if self.server is not None:
            create["admin_key"] = self.server.admin_key()
        await self._publisher.request(create)
        joined, _ = await self._publisher.request({"request": "join", "ptype": "publisher", "room": self.room,
                                                   "pin": self.pin, "display": "persona"})
        self.persona_feed = joined["id"]
        pc = RTCPeerConnection(rtc_configuration())
        self._publisher_pc = pc
        size = getattr(media, "size", None)
        pc.addTrack(PersonaVideoTrack(pipeline.video_out, size=size, max_fps=getattr(media, "fps", None)))
        pc.addTrack(PersonaAudioTrack(pipeline.audio_out))
        await pc.setLocalDescription(await pc.createOffer())
        _, answer = await self._publisher.request({"request": "publish", "audio": True, "video": True},
                                                  {"type": "offer", "sdp": pc.localDescription.sdp})
        if answer is None:
            raise JanusError("Janus did not answer the persona's offer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        self.ready.set()
        return self

    async def published(self, timeout: float = 15.0) -> bool:
        """True once the persona's connection to Janus is up (far ends can subscribe from then on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._publisher_pc is not None and self._publisher_pc.connectionState == "connected":
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        for far_end in list(self.far_ends.values()):
            await self._leave(far_end)
        if self._publisher_pc is not None:
            await self._publisher_pc.close()
        if self.session is not None:
            await self.session.close()
        if self.server is not None:
            await self.server.stop()

    # -- invitations ---------------------------------------------------------------------------------
    def invite(self, name: str) -> FarEnd:
        """A new link that admits one far end called `name`."""
        if not isinstance(name, str) or not _NAME.match(name.strip()):
            raise schema.BadMessage("a far end's name is 1-40 letters, digits, spaces, dots, hyphens or apostrophes")
        ttl = self.call.state.invite.ttl_s if self.call is not None else DEFAULT_TTL_S
        far_end = FarEnd(name=name.strip(), invite=Invite(ttl_s=ttl))
        self.far_ends[far_end.token] = far_end
        return far_end

    def by_id(self, ident: str) -> FarEnd | None:
        return next((f for f in self.far_ends.values() if f.ident == ident), None)

    async def withdraw(self, far_end: FarEnd) -> None:
        """Refuse this link from now on and take only this person out of the room."""
        far_end.invite.revoked = True
        if far_end.feed is not None and self._publisher is not None:
            try:
                await self._publisher.request({"request": "kick", "room": self.room, "secret": self.secret,
                                               "id": far_end.feed})
            except JanusError as exc:
                log.info("kick %s: %s", far_end.name, exc)
        await self._leave(far_end)
        if self.call is not None and _has_event("invite_revoked"):
            await asyncio.to_thread(self.call.state.record, "invite_revoked")

    async def _leave(self, far_end: FarEnd) -> None:
        for task in far_end.tasks:
            task.cancel()
        far_end.tasks.clear()
        if far_end.watcher is not None:
            await far_end.watcher.close()
            far_end.watcher = None
        for handle in (far_end.subscriber, far_end.publisher):
            if handle is not None:
                await handle.detach()
        far_end.subscriber = far_end.publisher = None
        far_end.feed = None

    # -- a far end's media ---------------------------------------------------------------------------
    async def subscribe(self, far_end: FarEnd) -> dict:
        """Janus's offer of the persona's feed, for this far end's page to answer."""
        assert self.session is not None
        if far_end.subscriber is not None:
            await far_end.subscriber.detach()
        far_end.subscriber = await self.session.attach()
        _, offer = await far_end.subscriber.request({"request": "join", "ptype": "subscriber", "room": self.room,
                                                     "pin": self.pin, "streams": [{"feed": self.persona_feed}]})
        if offer is None:
            raise JanusError("Janus sent no offer for the persona's feed")
        return {"sdp": offer["sdp"], "type": offer["type"]}

    async def start(self, far_end: FarEnd, answer_sdp: str) -> None:
        if far_end.subscriber is None:
            raise schema.BadMessage("subscribe first")
        await far_end.subscriber.request({"request": "start"}, {"type": "answer", "sdp": answer_sdp})
        far_end.joined_at = far_end.joined_at or time.time()

    async def publish(self, far_end: FarEnd, offer_sdp: str) -> dict:
        """Put this far end's camera and microphone into the room; the relay then watches it for the operator."""
        assert self.session is not None
        await self._unpublish(far_end)
        far_end.publisher = await self.session.attach()
        joined, _ = await far_end.publisher.request({"request": "join", "ptype": "publisher", "room": self.room,
                                                     "pin": self.pin, "display": far_end.ident})
        far_end.feed = joined["id"]
        _, answer = await far_end.publisher.request({"request": "publish", "audio": True, "video": True},
                                                    {"type": "offer", "sdp": offer_sdp})
        if answer is None:
            raise JanusError("Janus did not answer the far end's offer")
        far_end.tasks.append(asyncio.ensure_future(self._watch(far_end, far_end.feed)))
        return {"sdp": answer["sdp"], "type": answer["type"]}

    async def _unpublish(self, far_end: FarEnd) -> None:
        if far_end.watcher is not None:
            await far_end.watcher.close()
            far_end.watcher = None
        if far_end.publisher is not None:
            await far_end.publisher.detach()
            far_end.publisher, far_end.feed = None, None

    async def _watch(self, far_end: FarEnd, feed: int, timeout: float = 20.0) -> None:
        """Subscribe the relay to this far end's camera once its feed is live in the room (for the operator)."""
        assert self.session is not None
        handle = await self.session.attach()
        try:
            deadline = time.monotonic() + timeout
            offer = None
            while offer is None and time.monotonic() < deadline and far_end.feed == feed:
                try:
                    _, offer = await handle.request({"request": "join", "ptype": "subscriber", "room": self.room,
                                                     "pin": self.pin, "streams": [{"feed": feed}]})
                except JanusError:  # "No such feed" until the far end's connection is up
                    await asyncio.sleep(SUBSCRIBE_RETRY_S)
            if offer is None or far_end.feed != feed:
                return
            pc = RTCPeerConnection(rtc_configuration())
            far_end.watcher = pc

            @pc.on("track")
            def on_track(track) -> None:
                if track.kind == "video":
                    far_end.tasks.append(asyncio.ensure_future(consume_video(track, far_end.video)))

            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
            await pc.setLocalDescription(await pc.createAnswer())
            await handle.request({"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp})
            await asyncio.Future()  # hold the handle until cancelled (the far end leaves or is withdrawn)
        finally:
            await handle.detach()

    # -- routes --------------------------------------------------------------------------------------
    def attach(self, call: Any) -> None:
        """Register the room's routes on a calls.server.CallServer and tie the room to the app's life."""
        self.call = call
        app = call.app
        app.router.add_get("/sfu/join/{token}", self._join_page)
        for name in ("subscribe", "start", "publish", "report"):
            app.router.add_post(f"/sfu/join/{{token}}/{name}", getattr(self, f"_route_{name}"))
        app.router.add_get("/operator/{token}/sfu", self._operator_page)
        app.router.add_get("/operator/{token}/sfu/state.json", self._state)
        app.router.add_post("/operator/{token}/sfu/invite", self._new_invite)
        app.router.add_post("/operator/{token}/sfu/invite/{ident}/revoke", self._revoke)
        app.router.add_get("/operator/{token}/sfu/farend/{ident}.mjpg", self._farend_stream)

        async def on_startup(app: web.Application) -> None:
            await self.open(call.state.pipeline, call.state.config.media)

        async def on_shutdown(app: web.Application) -> None:
            await self.close()

        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)

    def _far_end(self, request: web.Request) -> FarEnd | web.Response:
        """The far end this link admits, or a refusal: unknown/withdrawn link, or another browser holds it."""
        token = request.match_info["token"]
        far_end = self.far_ends.get(token) if isinstance(token, str) else None
        if far_end is None:
            return self._refused("The invitation code in this link is wrong.")
        reason = far_end.invite.check(token)  # withdrawn or expired, as for the peer-to-peer link
        if reason is not None:
            return self._refused(reason)
        browser = request.cookies.get(FAREND_COOKIE)
        if request.method == "POST":
            if browser is None:
                return web.Response(status=400, text="this browser sent no cookie: reload the page\n")
            if far_end.browser is None:
                far_end.browser = browser
            elif not secrets.compare_digest(far_end.browser.encode(), browser.encode("utf-8", "replace")):
                return self._refused(f"This link is for {far_end.name} and is already in use.", status=409)
        return far_end

    @staticmethod
    def _refused(reason: str, status: int = 403) -> web.Response:
        from calls.server import refused

        return refused(reason, status)

    async def _join_page(self, request: web.Request) -> web.Response:
        far_end = self._far_end(request)
        if isinstance(far_end, web.Response):
            return far_end
        from calls.server import _page

        resp = web.Response(text=_page("sfu_join.html").replace("{name}", html.escape(far_end.name)),
                            content_type="text/html")
        if FAREND_COOKIE not in request.cookies:
            resp.set_cookie(FAREND_COOKIE, new_token(), httponly=True, samesite="Strict", secure=request.secure,
                            path="/sfu/join/")
        return resp

    async def _json(self, request: web.Request, limit: int = schema.MAX_OFFER_BYTES) -> Any:
        return await self.call._body(request, "the message", limit)

    async def _route_subscribe(self, request: web.Request) -> web.Response:
        far_end = self._far_end(request)
        if isinstance(far_end, web.Response):
            return far_end
        if not self.ready.is_set():
            return web.Response(status=503, text="the call is starting: try again in a moment\n")
        return web.json_response(await self.subscribe(far_end))

    async def _route_start(self, request: web.Request) -> web.Response:
        far_end = self._far_end(request)
        if isinstance(far_end, web.Response):
            return far_end
        await self.start(far_end, _sdp(await self._json(request), "answer"))
        return web.Response(status=204)

    async def _route_publish(self, request: web.Request) -> web.Response:
        far_end = self._far_end(request)
        if isinstance(far_end, web.Response):
            return far_end
        return web.json_response(await self.publish(far_end, _sdp(await self._json(request), "offer")))

    async def _route_report(self, request: web.Request) -> web.Response:
        far_end = self._far_end(request)
        if isinstance(far_end, web.Response):
            return far_end
        far_end.report = {**_report(await self._json(request, schema.MAX_JSON_BYTES)), "received_at": time.time()}
        return web.Response(status=204)

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def _operator_page(self, request: web.Request) -> web.Response:
        if (refusal := self.call._operator_refusal(request)) is not None:
            return refusal
        from calls.server import _page

        return web.Response(text=_page("sfu_operator.html").replace(
            "{persona}", html.escape(self.call.state.config.persona_name)), content_type="text/html")

    async def _state(self, request: web.Request) -> web.Response:
        if (refusal := self.call._operator_refusal(request)) is not None:
            return refusal
        base = self._base(request)
        return web.json_response({"room_ready": self.ready.is_set(),
                                  "far_ends": [f.describe(base) for f in self.far_ends.values()]})

    async def _new_invite(self, request: web.Request) -> web.Response:
        if (refusal := self.call._operator_refusal(request)) is not None:
            return refusal
        body = await self._json(request, 2000)
        far_end = self.invite(body.get("name") if isinstance(body, dict) else None)
        await asyncio.to_thread(self.call.state.record, "invite_created",
                                expires=self.call.state.invite.describe()["expires_at"])
        return web.json_response(far_end.describe(self._base(request)))

    async def _revoke(self, request: web.Request) -> web.Response:
        if (refusal := self.call._operator_refusal(request)) is not None:
            return refusal
        far_end = self.by_id(request.match_info["ident"])
        if far_end is None:
            raise web.HTTPNotFound(text="no such far end\n")
        await self.withdraw(far_end)
        return web.json_response(far_end.describe(self._base(request)))

    async def _farend_stream(self, request: web.Request) -> web.StreamResponse:
        far_end = self.by_id(request.match_info["ident"])
        if far_end is None:
            raise web.HTTPNotFound(text="no such far end\n")
        return await self.call._mjpeg(request, far_end.video)


def _has_event(name: str) -> bool:
    from engine.audit import EVENTS

    return name in EVENTS
