"""Running a call: the assembled call (calls/assembly.py) + operator source + web server, until Ctrl-C."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from calls.console import Controls
from calls.invites import DEFAULT_TTL_S, Invite
from calls.assembly import CallAssembly, CallChoices
from calls.media_options import MediaOptions
from calls.server import CallConfig, CallServer, CallState
from calls.tls import fingerprint, require_tls_for, self_signed, server_context
from engine.errors import EvercallError
from calls.sources import Source
from engine.persona import Persona
from engine.resolve import check_still_usable
from engine.pipeline import AUDIO_RATE

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    choices: CallChoices = field(default_factory=CallChoices)
    invite_ttl_s: float = DEFAULT_TTL_S
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    media: MediaOptions = field(default_factory=MediaOptions)
    extensions: list = field(default_factory=list)  # f(CallServer) before it starts: e.g. the SFU room (calls/sfu)

    def ssl_context(self) -> tuple[ssl.SSLContext | None, str | None]:
        """(context, fingerprint): None for plain HTTP, which only a loopback bind may use."""
        require_tls_for(self.host, bool(self.tls_cert or self.tls_self_signed))
        if self.tls_self_signed and not self.tls_cert:
            from engine.home import default_home

            cert, key, fp = self_signed(default_home() / "tls", self.host)
            return server_context(cert, key), fp
        if self.tls_cert:
            if not self.tls_key:
                raise EvercallError("--tls-cert needs --tls-key: give the certificate's private key too")
            return server_context(self.tls_cert, self.tls_key), fingerprint(self.tls_cert)
        return None, None


class RunningCall:
    """A started call that tests and the CLI can stop; `url(path)` gives absolute links."""

    def __init__(self, state: CallState, source: Source, runner: web.AppRunner, host: str, port: int,
                 tls_fingerprint: str | None = None) -> None:
        self.state, self.source, self.runner = state, source, runner
        self.host, self.port = host, port
        self.tls_fingerprint = tls_fingerprint
        self.ended = asyncio.Event()  # set when the operator ends the call from the console

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls_fingerprint else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def join_url(self) -> str:
        return f"{self.base_url}/join/{self.state.invite.token}"

    @property
    def operator_url(self) -> str:
        return f"{self.base_url}/operator/{self.state.config.operator_token}"

    async def stop(self) -> None:
        self.source.stop()
        await self.runner.cleanup()
        self.state.pipeline.close()


async def start_call(persona: Persona, source: Source, options: ServeOptions) -> RunningCall:
    """Build everything, start the source and bind the server; filters are built off the event loop."""
    context, tls_fp = options.ssl_context()  # refuses an unsafe bind before any work is done
    assembly = CallAssembly(persona, options.choices)
    pipeline = await asyncio.to_thread(assembly.pipeline, AUDIO_RATE)
    config = CallConfig(persona_name=persona.name, assembly=assembly, media=options.media,
                        persona_notes=getattr(persona, "notes", "") or "",
                        admit=functools.partial(check_still_usable, persona, "call"))
    state = CallState(pipeline=pipeline, config=config, invite=Invite(ttl_s=options.invite_ttl_s),
                      mode=getattr(assembly, "face_mode", options.choices.mode))  # what auto chose
    await asyncio.to_thread(state.record, "invite_created", expires=state.invite.describe()["expires_at"])
    call_box: list[RunningCall] = []

    async def end_call() -> None:
        state.invite.revoked = True
        await server.close_peer()
        call_box[0].ended.set()

    controls = Controls(state, assembly.face, end_call)
    server = CallServer(state, controls)
    if hasattr(source, "attach"):  # a source with routes of its own (calls/operator_browser.py)
        source.attach(server)
    for extend in options.extensions:
        extend(server)
    runner = web.AppRunner(server.app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, ssl_context=context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        pipeline.close()
        raise EvercallError(f"cannot listen on {options.host}:{options.port} ({exc.strerror}): "
                            "pick another port with --port") from exc
    port = site._server.sockets[0].getsockname()[1] if options.port == 0 else options.port  # type: ignore[union-attr]
    source.start(pipeline.push_video, pipeline.push_audio)
    call = RunningCall(state, source, runner, options.host, port, tls_fp)
    call_box.append(call)
    return call


async def serve_forever(persona: Persona, source: Source, options: ServeOptions, announce) -> None:
    """Start the call, print its links, and run until Ctrl-C or SIGTERM; then shut down cleanly."""
    call = await start_call(persona, source, options)
    announce(call)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set() and not call.ended.is_set():
            error = str(source.error) if source.error is not None else None
            if error != call.state.source_error:
                call.state.source_error = error
                if error:
                    log.error("operator input: %s (the far end sees the persona's portrait meanwhile)", error)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        await call.stop()
