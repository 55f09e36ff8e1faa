"""Running a call: persona + filters + operator source + pipeline + web server, until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from calls.server import CallServer, CallState
from calls.sources import Source
from engine.media import VideoFrame
from engine.persona import Persona
from engine.pipeline import CallPipeline

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    mode: str = "swap"


def persona_id(persona: Persona) -> str:
    """What the audit log calls a persona: its store id or its folder's name, never its likeness."""
    return persona.source.name if persona.source is not None else persona.name


def build_pipeline(persona: Persona, mode: str = "swap", rate: int = 48000) -> CallPipeline:
    """The persona's face and voice filters in a started pipeline (filters are built before any I/O)."""
    from filters.factory import face_filter, voice_stream

    face = face_filter(persona, mode)
    voice = voice_stream(persona, rate)

    def convert(frame: VideoFrame) -> VideoFrame:
        return frame.with_image(face.process(frame.image, frame.t_capture).image)

    return CallPipeline(convert, voice, audio_rate=rate).start()


class RunningCall:
    """A started call that tests and the CLI can stop; `url(path)` gives absolute links."""

    def __init__(self, state: CallState, source: Source, runner: web.AppRunner, host: str, port: int) -> None:
        self.state, self.source, self.runner = state, source, runner
        self.host, self.port = host, port

    @property
    def join_url(self) -> str:
        return f"http://{self.host}:{self.port}/join/{self.state.join_token}"

    @property
    def operator_url(self) -> str:
        return f"http://{self.host}:{self.port}/operator/{self.state.operator_token}"

    async def stop(self) -> None:
        self.source.stop()
        await self.runner.cleanup()
        self.state.pipeline.close()


async def start_call(persona: Persona, source: Source, options: ServeOptions) -> RunningCall:
    """Build everything, start the source and bind the server; filters are built off the event loop."""
    pipeline = await asyncio.to_thread(build_pipeline, persona, options.mode)
    from engine.home import audit_log

    state = CallState(pipeline=pipeline, persona_name=persona.name, persona_id=persona_id(persona),
                      audit=audit_log())
    state.record("invite_created", expires=None)
    server = CallServer(state)
    runner = web.AppRunner(server.app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        pipeline.close()
        from engine.errors import EvercallError

        raise EvercallError(f"cannot listen on {options.host}:{options.port} ({exc.strerror}): "
                            "pick another port with --port") from exc
    port = site._server.sockets[0].getsockname()[1] if options.port == 0 else options.port  # type: ignore[union-attr]
    source.start(pipeline.push_video, pipeline.push_audio)
    return RunningCall(state, source, runner, options.host, port)


async def serve_forever(persona: Persona, source: Source, options: ServeOptions, announce) -> None:
    """Start the call, print its links, and run until Ctrl-C or SIGTERM; then shut down cleanly."""
    call = await start_call(persona, source, options)
    announce(call)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            if source.error is not None and call.state.source_error is None:
                call.state.source_error = str(source.error)
                log.error("operator input failed: %s (the far end now sees the persona's portrait)", source.error)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        await call.stop()
