"""The real relay server on a free loopback port, for benchmarks and tests: one place that starts a CallServer
outside `evercall serve` (no audit log: a measurement is not a call)."""

from __future__ import annotations

from aiohttp import web

from calls.media_options import MediaOptions
from calls.server import CallConfig, CallServer, CallState


async def serve_on_loopback(state: CallState) -> tuple[web.AppRunner, str]:
    """Serve `state` with the real CallServer on 127.0.0.1 at a free port: (runner to clean up, base URL)."""
    runner = web.AppRunner(CallServer(state).app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def start_relay(pipeline, source, media: MediaOptions | None = None) -> tuple[CallState, web.AppRunner, str]:
    """A benchmark's call: `source` feeding `pipeline` behind the real CallServer on loopback; (state, runner
    to clean up, far-end link). `media`: None for `evercall serve`'s defaults."""
    state = CallState(pipeline=pipeline, config=CallConfig(persona_name="benchmark", media=media or MediaOptions()))
    runner, base = await serve_on_loopback(state)
    source.start(pipeline.push_video, pipeline.push_audio)
    return state, runner, f"{base}/join/{state.invite.token}"
