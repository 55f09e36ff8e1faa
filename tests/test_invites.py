"""Who may join: wrong, expired and withdrawn links, a second far end, and unsafe binds are refused."""

from __future__ import annotations

import time

import aiohttp
import pytest
from aiohttp import web

from tests.farend import offer_sdp
from calls.invites import Invite
from calls.serve import ServeOptions
from engine.errors import EvercallError


async def test_wrong_token_gets_a_plain_refusal(server) -> None:
    state, base = server
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/join/not-the-token") as r:
            assert r.status == 403
            assert "link is not valid" in await r.text()
        async with s.post(f"{base}/join/not-the-token/offer", json={}) as r:
            assert r.status == 403


async def test_expired_token_is_refused(server) -> None:
    state, base = server
    state.invite = Invite(ttl_s=60, created_at=time.time() - 61)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/join/{state.invite.token}") as r:
            assert r.status == 403 and "expired" in await r.text()


async def test_operator_can_withdraw_and_renew_the_link(server) -> None:
    state, base = server
    old = state.invite.token
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/operator/{state.config.operator_token}/invite/revoke") as r:
            assert r.status == 200
        async with s.get(f"{base}/join/{old}") as r:
            assert r.status == 403 and "withdrawn" in await r.text()
        async with s.post(f"{base}/operator/wrong/invite/renew") as r:
            assert r.status == 403, "only the operator may issue links"
        async with s.post(f"{base}/operator/{state.config.operator_token}/invite/renew") as r:
            new_url = (await r.json())["join_url"]
        assert old not in new_url
        async with s.get(new_url) as r:
            assert r.status == 200
        async with s.get(f"{base}/join/{old}") as r:
            assert r.status == 403


async def test_second_far_end_is_refused_while_the_first_holds_the_call(server) -> None:
    state, base = server
    # unsafe=True: keep cookies from an IP-address host, as browsers do.
    first = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    second = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    pcs = []
    try:
        for session in (first, second):
            async with session.get(f"{base}/join/{state.invite.token}") as r:
                assert r.status == 200  # each browser gets its own cookie
        pc, offer = await offer_sdp()
        pcs.append(pc)
        async with first.post(f"{base}/join/{state.invite.token}/offer", json=offer) as r:
            assert r.status == 200, await r.text()
        pc, offer = await offer_sdp()
        pcs.append(pc)
        async with second.post(f"{base}/join/{state.invite.token}/offer", json=offer) as r:
            assert r.status == 409
            assert "already in this call" in await r.text()
        pc, offer = await offer_sdp()
        pcs.append(pc)
        async with first.post(f"{base}/join/{state.invite.token}/offer", json=offer) as r:
            assert r.status == 200, "the same browser may reload and come back"
    finally:
        await first.close()
        await second.close()
        for pc in pcs:
            await pc.close()


async def test_malformed_offer_does_not_stop_the_server(server) -> None:
    state, base = server
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/join/{state.invite.token}/offer", data=b"{not json") as r:
            assert r.status == 400
        async with s.post(f"{base}/join/{state.invite.token}/offer", json={"sdp": "v=0 nonsense", "type": "offer"}) as r:
            assert r.status == 400
        async with s.get(f"{base}/join/{state.invite.token}") as r:
            assert r.status == 200


def test_non_loopback_bind_without_tls_is_refused() -> None:
    with pytest.raises(EvercallError) as err:
        ServeOptions(host="0.0.0.0").ssl_context()
    text = str(err.value)
    assert "TLS" in text and "--tls-cert" in text and "--tls-self-signed" in text
    assert ServeOptions(host="127.0.0.1").ssl_context() == (None, None)


async def test_self_signed_tls_serves_https_and_prints_a_fingerprint(server) -> None:
    context, fp = ServeOptions(host="192.0.2.10", tls_self_signed=True).ssl_context()
    assert context is not None and len(fp.split(":")) == 32
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"https://127.0.0.1:{port}/", ssl=False) as r:
                assert await r.text() == "secure"
    finally:
        await runner.cleanup()
