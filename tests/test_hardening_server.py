"""What an attacker holding the far-end link could do to a call (issue 14, items 1, 2, 9, 11), each refused.

Every test here failed against the server before the hardening: HTML reports were stored and put into the
operator page by innerHTML, an empty offer locked the seat, odd tokens and payloads made 500s, pages had
no Content-Security-Policy, the operator socket took any Origin, and `"on": "false"` muted.
"""

from __future__ import annotations

import asyncio
import re
import time
from importlib import resources

import aiohttp
import pytest

from calls.invites import FarEndSeat
from tests.farend import offer_sdp

HTML_REPORT = {"connectionState": "<img src=x onerror=alert(1)>", "video": {"framesPerSecond": "<b>30</b>"}}
NESTED = "[" * 100_000 + "]" * 100_000


async def admitted(base: str, token: str) -> int:
    """The status a genuine far end (a real aiortc offer, fresh browser) gets."""
    pc, offer = await offer_sdp()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/join/{token}/offer", json=offer) as r:
                return r.status
    finally:
        await pc.close()


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# -- 1. far-end reports are data ---------------------------------------------------------------------


async def test_html_in_a_report_is_refused_and_never_reaches_the_operator(server) -> None:
    state, base = server
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.get(f"{base}/join/{state.invite.token}") as r:
            assert r.status == 200
        async with s.post(f"{base}/join/{state.invite.token}/report", json=HTML_REPORT) as r:
            assert r.status in (400, 409), "a report with markup in it is not stored"
            assert one_line(await r.text())
    assert state.farend_report is None


def test_operator_script_renders_by_text_and_no_page_has_inline_code() -> None:
    static = resources.files("calls").joinpath("static")
    script = static.joinpath("operator.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "outerHTML" not in script
    assert "textContent" in script
    for page in (p for p in static.iterdir() if p.name.endswith(".html")):
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text, re.I), f"{page.name} has inline script"
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", text, re.I), f"{page.name} has inline style/handlers"


# -- 2. the seat --------------------------------------------------------------------------------------


async def test_an_empty_offer_does_not_lock_the_seat(server) -> None:
    state, base = server
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/join/{state.invite.token}/offer", json={"sdp": "", "type": "offer"}) as r:
            assert r.status == 400 and one_line(await r.text())
    assert await admitted(base, state.invite.token) == 200, "the real far end is still let in"


async def test_an_offer_that_never_connects_frees_the_seat(server) -> None:
    state, base = server
    state.seat = FarEndSeat(connect_timeout_s=0.6)
    assert await admitted(base, state.invite.token) == 200  # a far end that then vanishes
    assert await admitted(base, state.invite.token) == 409  # meanwhile the seat is held...
    await asyncio.sleep(1.2)
    assert state.peer is None, "the stale connection was closed"
    assert await admitted(base, state.invite.token) == 200, "...but not for long"


def test_seat_state_machine_frees_a_silent_far_end_and_keeps_a_live_one() -> None:
    clock = [100.0]
    seat = FarEndSeat(connect_timeout_s=10, lost_grace_s=5, clock=lambda: clock[0])
    first = seat.admit("a")
    assert first is not None and seat.state == "offered"
    assert seat.admit("b") is None
    seat.connected(first)
    seat.heard(first)
    for _ in range(60):  # connected and heard from every second: no timeout while it keeps talking
        clock[0] += 1
        seat.heard(first)
    assert seat.admit("b") is None and seat.state == "connected"
    clock[0] += 5.5  # then silence beyond the grace
    assert seat.state == "free"
    seat.heard(first)  # it was only paused, and nobody else came: its seat again
    assert seat.state == "connected" and seat.holder == "a"
    clock[0] += 5.5
    assert seat.state == "free"
    second = seat.admit("b")
    seat.heard(first)  # too late: someone else has it
    assert second is not None
    seat.release(first)  # a late event of the old connection frees nothing
    assert seat.holder == "b"
    clock[0] += 10.5  # b never connects
    assert seat.admit("c") is not None


# -- 9. no 500s -----------------------------------------------------------------------------------------


async def test_odd_requests_get_one_line_4xx_never_500(server) -> None:
    state, base = server
    join = f"{base}/join/{state.invite.token}"
    async with aiohttp.ClientSession() as s:
        for url in (f"{base}/operator/%C3%A9t%C3%A9/stats.json", f"{base}/operator/\u00e9/ws",
                    f"{base}/join/%C3%A9t%C3%A9"):
            async with s.get(url) as r:
                assert r.status == 403, url
        for body in ({"sdp": 5, "type": "offer"}, {"sdp": ["v=0"], "type": "offer"}, {"sdp": None},
                     [], "offer", {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"}):
            async with s.post(f"{join}/offer", json=body) as r:
                assert r.status == 400, body
                assert one_line(await r.text())
        for url in (f"{join}/offer", f"{join}/report"):
            async with s.post(url, data=NESTED, headers={"Content-Type": "application/json"}) as r:
                assert 400 <= r.status < 500, url
                assert one_line(await r.text())
        async with s.ws_connect(f"{base}/operator/{state.config.operator_token}/ws") as ws:
            await ws.send_str(NESTED[:60_000])
            while (msg := await ws.receive_json(timeout=5))["type"] != "result":
                pass
            assert msg["ok"] is False
            await ws.send_json({"action": "mute", "on": True})
            while (msg := await ws.receive_json(timeout=5))["type"] != "result":
                pass
            assert msg["ok"] is True, "the console still works after a bad message"
    assert await admitted(base, state.invite.token) == 200


# -- 11. headers and origins -----------------------------------------------------------------------------


async def test_pages_carry_a_strict_policy_and_no_referrer_or_cache(server) -> None:
    state, base = server
    async with aiohttp.ClientSession() as s:
        for url in (f"{base}/join/{state.invite.token}", f"{base}/operator/{state.config.operator_token}",
                    f"{base}/operator/{state.config.operator_token}/stats.json", f"{base}/join/wrong"):
            async with s.get(url) as r:
                csp = r.headers.get("Content-Security-Policy", "")
                assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, url
                assert "unsafe-inline" not in csp
                assert r.headers.get("Referrer-Policy") == "no-referrer", url
                assert r.headers.get("Cache-Control") == "no-store", url
                assert r.headers.get("X-Content-Type-Options") == "nosniff", url
        async with s.get(f"{base}/static/operator.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
        async with s.get(f"{base}/static/..%2Fserver.py") as r:
            assert r.status == 404


async def test_operator_socket_refuses_a_foreign_origin(server) -> None:
    state, base = server
    url = f"{base}/operator/{state.config.operator_token}/ws"
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        async with s.post(f"{base}/operator/{state.config.operator_token}/invite/revoke",
                          headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403 and not state.invite.revoked
        async with s.ws_connect(url, headers={"Origin": base}) as ws:
            await ws.send_json({"action": "end"})


async def test_text_false_does_not_mute(server) -> None:
    state, base = server
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{base}/operator/{state.config.operator_token}/ws") as ws:
            for on in ("false", 1, None):
                await ws.send_json({"action": "mute", "on": on})
                while (msg := await ws.receive_json(timeout=5))["type"] != "result":
                    pass
                assert msg["ok"] is False and "true or false" in msg["message"]
                assert state.pipeline.muted is False


async def test_a_connected_far_end_keeps_its_seat_past_the_grace(server) -> None:
    """Its browser's RTCP reports are signs of life even when it sends no media of its own."""
    from tests.farend import join_for

    state, base = server
    state.seat = FarEndSeat(connect_timeout_s=10, lost_grace_s=3.0)
    call = asyncio.ensure_future(join_for(f"{base}/join/{state.invite.token}", 6.5))
    states = []
    for _ in range(22):
        await asyncio.sleep(0.25)
        states.append(state.seat.state)
    assert "connected" in states
    assert states[-1] == "connected", f"the seat was freed under a live far end: {states}"
    assert state.seat.last_heard is not None and time.monotonic() - state.seat.last_heard < 3.0
    assert await admitted(base, state.invite.token) == 409
    assert (await call)["state"] == "connected"
