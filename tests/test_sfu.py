"""Several far ends in one call through a local Janus (calls/sfu): each named link admits one person, everyone
receives the persona, the operator sees every far end, and withdrawing one link removes only that person.

Janus is a system service (Debian package `janus`, `bash install.sh --cluster`): where it is not installed
the Janus tests skip and say so.
"""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from benchmarks.identity import closer_to_persona
from calls import schema
from calls.ice import rtc_configuration
from calls.serve import ServeOptions, start_call
from calls.sfu.janus import janus_binary
from calls.sfu.room import SfuRoom, _report
from calls.sources import FileSource

needs_janus = pytest.mark.skipif(janus_binary() is None,
                                 reason="Janus is not installed (bash install.sh --cluster installs it with apt)")


def test_invite_names_are_checked_and_each_link_is_its_own() -> None:
    room = SfuRoom("http://127.0.0.1:1/janus")
    a, b = room.invite("Mum"), room.invite("Uncle Li")
    assert a.token != b.token and room.by_id(a.ident) is a
    for bad in ("", "x" * 41, "<script>", None, 3):
        with pytest.raises(schema.BadMessage):
            room.invite(bad)


async def test_an_expired_or_withdrawn_link_is_refused() -> None:
    from aiohttp.test_utils import make_mocked_request

    room = SfuRoom("http://127.0.0.1:1/janus")
    old, gone, good = room.invite("Mum"), room.invite("Dad"), room.invite("Ann")
    old.invite.created_at -= old.invite.ttl_s + 1  # the Invite's own expiry decides
    await room.withdraw(gone)
    for far_end, status in ((old, 403), (gone, 403), (good, None)):
        got = room._far_end(make_mocked_request("GET", f"/sfu/join/{far_end.token}",
                                                match_info={"token": far_end.token}))
        assert (got.status if hasattr(got, "status") else None) == status


def test_report_keeps_only_numbers_and_a_jpeg() -> None:
    got = _report({"framesDecoded": 10, "audioLevel": 0.2, "evil": "x", "framesPerSecond": "30",
                   "snapshot": "data:text/html;base64,AAAA"})
    assert got == {"framesDecoded": 10, "audioLevel": 0.2}


class _SfuFarEnd:
    """What sfu_join.js does, in aiortc: subscribe to the persona, answer, start; keep the frames and audio."""

    def __init__(self, join_url: str) -> None:
        self.join_url = join_url
        self.frames: list[np.ndarray] = []
        self.audio: list[np.ndarray] = []
        self.pc = RTCPeerConnection(rtc_configuration())
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies on an IP host
        self.tasks: list[asyncio.Task] = []

    async def join(self) -> None:
        async with self.http.get(self.join_url) as resp:  # sets the browser cookie
            assert resp.status == 200, await resp.text()
        async with self.http.post(self.join_url + "/subscribe", json={}) as resp:
            assert resp.status == 200, await resp.text()
            offer = await resp.json()

        @self.pc.on("track")
        def on_track(track) -> None:
            async def pull() -> None:
                while True:
                    frame = await track.recv()
                    if track.kind == "video":
                        if len(self.frames) % 3 == 0:
                            self.frames.append(frame.to_ndarray(format="bgr24"))
                        else:
                            self.frames.append(None)
                    else:
                        self.audio.append(frame.to_ndarray().astype(np.float32).reshape(-1) / 32768)
            self.tasks.append(asyncio.ensure_future(pull()))

        await self.pc.setRemoteDescription(RTCSessionDescription(**offer))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        async with self.http.post(self.join_url + "/start", json={"sdp": self.pc.localDescription.sdp,
                                                                   "type": "answer"}) as resp:
            assert resp.status == 204, await resp.text()

    def pictures(self) -> list[np.ndarray]:
        return [f for f in self.frames if f is not None]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        await self.http.close()


async def _room_call(demo, demo_persona):
    room = SfuRoom()
    options = ServeOptions(port=0)
    options.extensions.append(room.attach)
    call = await start_call(demo_persona, FileSource(demo.operator_clip, loop=True), options)
    assert await room.published(), "the persona's connection to Janus did not come up"
    return call, room


async def _operator_post(call, path: str, body: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(call.operator_url + "/sfu" + path, json=body or {}) as resp:
            return resp.status, (await resp.json() if resp.content_type == "application/json" else {})


@needs_janus
@pytest.mark.slow
async def test_two_far_ends_receive_the_persona_and_one_is_withdrawn_alone(demo, demo_persona) -> None:
    call, room = await _room_call(demo, demo_persona)
    ends: list[_SfuFarEnd] = []
    try:
        status, mum = await _operator_post(call, "/invite", {"name": "Mum"})
        assert status == 200
        _, dad = await _operator_post(call, "/invite", {"name": "Dad"})
        ends = [_SfuFarEnd(mum["join_url"]), _SfuFarEnd(dad["join_url"])]
        for end in ends:
            await end.join()
        # A second browser on Mum's link is turned away: one link, one person.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as stranger:
            async with stranger.get(mum["join_url"]) as resp:
                assert resp.status == 200
            async with stranger.post(mum["join_url"] + "/subscribe", json={}) as resp:
                assert resp.status == 409
        await asyncio.sleep(6.0)
        counts = [len(e.frames) for e in ends]
        _, withdrawn = await _operator_post(call, f"/invite/{mum['id']}/revoke")
        assert withdrawn["revoked"] is True
        after = [len(e.frames) for e in ends]
        await asyncio.sleep(3.0)
        later = [len(e.frames) for e in ends]
        async with ends[0].http.get(mum["join_url"]) as resp:
            refused_status = resp.status
        async with ends[1].http.get(dad["join_url"]) as resp:
            still_status = resp.status
    finally:
        for end in ends:
            await end.close()
        await call.stop()

    operator_face = cv2.imread(str(demo.operator_photo))
    for end, n in zip(ends, counts):
        assert n >= 20, f"a far end received only {n} frames through Janus"
        pictures = end.pictures()
        faced, closer = closer_to_persona(pictures[-10:], demo_persona.photo, operator_face)
        assert faced >= 3 and closer / faced >= 0.9, f"{closer}/{faced} frames through Janus look like the persona"
        rms = float(np.sqrt(np.mean(np.concatenate(end.audio[-100:]) ** 2)))
        assert rms > 0.01, f"far end audio through Janus is silent (rms {rms:.4f})"
    assert refused_status == 403 and still_status == 200
    assert later[0] - after[0] <= 3, "the withdrawn far end kept receiving the persona"
    assert later[1] - after[1] >= 10, "withdrawing one far end stopped the other"


@needs_janus
@pytest.mark.slow
async def test_two_chromium_far_ends_see_and_hear_the_persona_and_the_operator_sees_both(demo, demo_persona,
                                                                                        tmp_path) -> None:
    """Done means: two browsers in one call through Janus both receive the persona's face and voice."""
    from benchmarks.browser import chromium, require_chromium, write_y4m

    require_chromium()
    faces = [cv2.imread(str(demo.operator_photo)), np.full((480, 640, 3), 90, np.uint8)]
    cams = [write_y4m(tmp_path / f"cam{i}.y4m", face, seconds=1.0) for i, face in enumerate(faces)]
    call, room = await _room_call(demo, demo_persona)
    try:
        links = [(await _operator_post(call, "/invite", {"name": name}))[1] for name in ("Anna", "Ben")]
        far = {f.token: f for f in room.far_ends.values()}
        ends = [far[link["join_url"].rsplit("/", 1)[1]] for link in links]
        with chromium(links[0]["join_url"], video=cams[0]) as b1, chromium(links[1]["join_url"], video=cams[1]) as b2:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                reports = [e.report or {} for e in ends]
                if all(r.get("framesDecoded", 0) > 45 and r.get("audioPacketsReceived", 0) > 100
                       and "snapshot" in r for r in reports) and all(e.video.peek()[0] > 5 for e in ends):
                    break
                await asyncio.sleep(0.5)
            reports = [dict(e.report or {}) for e in ends]
            seen = [e.video.peek()[0] for e in ends]
            logs = [b.log_tail(1500) for b in (b1, b2)]
            # Withdraw Anna: her link stops, Ben's call goes on.
            await _operator_post(call, f"/invite/{links[0]['id']}/revoke")
            before = ends[1].report.get("framesDecoded", 0)
            await asyncio.sleep(3.0)
            after = ends[1].report.get("framesDecoded", 0)
    finally:
        await call.stop()
    for name, r, log_tail in zip(("Anna", "Ben"), reports, logs):
        assert r.get("framesDecoded", 0) > 45, f"{name}'s browser decoded {r.get('framesDecoded')} frames: {log_tail}"
        assert r.get("audioPacketsReceived", 0) > 100, f"{name}'s browser got no voice: {r}"
        jpeg = base64.b64decode(r["snapshot"].split(",", 1)[1])
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        big = cv2.resize(picture, (640, 480))
        faced, closer = closer_to_persona([big], demo_persona.photo, faces[0])
        assert faced == 1 and closer == 1, f"{name}'s browser does not show the persona's face"
    assert all(n > 5 for n in seen), f"the operator does not see every far end (frames: {seen})"
    assert after > before + 20, "withdrawing Anna stopped Ben's call"


def test_sfu_url_without_sfu_is_refused_with_one_line() -> None:
    import argparse

    from calls.serve import ServeOptions
    from calls.sfu import cli as sfu_cli
    from engine.errors import EvercallError

    options = ServeOptions()
    with pytest.raises(EvercallError, match="--sfu janus"):
        sfu_cli.extend(options, argparse.Namespace(sfu=None, sfu_url="http://127.0.0.1:8088/janus"))
    sfu_cli.extend(options, argparse.Namespace(sfu=None, sfu_url=None))
    assert options.extensions == []
    sfu_cli.extend(options, argparse.Namespace(sfu="janus", sfu_url=None))
    assert len(options.extensions) == 1
