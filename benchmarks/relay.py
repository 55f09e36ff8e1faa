"""The real relay server on a free loopback port, for benchmarks and tests: one place that starts a CallServer
outside `evercall serve` (no audit log: a measurement is not a call)."""

from __future__ import annotations

from aiohttp import web

from calls.server import CallServer, CallState


async def serve_on_loopback(state: CallState) -> tuple[web.AppRunner, str]:
    """Serve `state` with the real CallServer on 127.0.0.1 at a free port: (runner to clean up, base URL)."""
    runner = web.AppRunner(CallServer(state).app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
