"""One call on a Ray worker: an actor that opens the persona there and runs the whole call in its process.

The actor is a plain class here; calls/cluster/front.py makes it a Ray actor with the call's resource
share and pins it to the node it chose. It is an async actor: the call's web server and WebRTC run on
the actor's own event loop, and media go straight between the browsers and this worker (its own port).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from calls.cluster.sealed import Opener

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _open_persona(spec: str, passphrase: str | None):
    """The persona on this worker: the built-in demo, or a name in this machine's encrypted store."""
    if spec == "demo":
        from calls.demo import demo_assets
        from engine.resolve import open_persona

        persona = open_persona(demo_assets().persona_dir, "call")
        persona.name = "demo (a composite of no real person)"
        return persona
    from engine.store import PersonaStore

    return PersonaStore(passphrase=passphrase).load(spec, "call")  # decrypted in memory only


class CallActor:
    """A call placed on this worker by the front door."""

    def __init__(self) -> None:
        self._opener = Opener()
        self.call: Any = None
        self.source: Any = None
        self.info: dict = {}

    def public_key(self) -> bytes:
        return self._opener.public

    async def start(self, spec: dict) -> dict:
        """spec: persona ("demo" or a store name), sealed (the passphrase sealed to this actor, or None),
        source ("browser" or "demo"), host (this worker's address), choices (CallChoices fields),
        sfu (True: far ends join through a Janus room, started on this worker unless sfu_url names one)."""
        import ray

        from calls.assembly import CallChoices
        from calls.serve import ServeOptions, start_call

        sealed = spec.get("sealed")
        passphrase = self._opener.open(sealed) if sealed else None
        persona = await asyncio.to_thread(_open_persona, spec["persona"], passphrase)
        if spec.get("source") == "demo":
            from calls.demo import demo_assets
            from calls.sources import FileSource

            self.source = FileSource(demo_assets().operator_clip, loop=True)
        else:
            from calls.operator_browser import BrowserSource

            self.source = BrowserSource()
        host = spec.get("host", "127.0.0.1")
        options = ServeOptions(host=host, port=0, choices=CallChoices(**spec.get("choices", {})),
                               tls_self_signed=host not in LOOPBACK)
        if spec.get("sfu"):  # several far ends through Janus on this worker (calls/sfu)
            from calls.sfu.room import SfuRoom

            options.extensions.append(SfuRoom(spec.get("sfu_url"), os.environ.get("EVERCALL_JANUS_SECRET")).attach)
        self.call = await start_call(persona, self.source, options)
        self.info = {"operator_url": self.call.operator_url, "join_url": self.call.join_url,
                     "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                     "tls_fingerprint": self.call.tls_fingerprint,
                     "room_url": f"{self.call.operator_url}/sfu" if spec.get("sfu") else None}
        return self.info

    async def first_frame(self, timeout: float = 60.0) -> float | None:
        """Wall-clock time of the first converted frame out of the pipeline (None if none came in time)."""
        slot = self.call.state.pipeline.video_out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            version, item = await slot.wait_newer(0, timeout=0.5)
            if item is not None:
                return time.time()
        return None

    def ping(self) -> bool:
        return True

    async def status(self) -> dict:
        """What `evercall cluster status` lists for this call."""
        if self.call is None:
            return {**self.info, "state": "starting"}
        state = self.call.state
        stats = state.pipeline.stats()
        face = stats.get("face", {})
        return {**self.info, "state": "ended" if self.call.ended.is_set() else "running",
                "far_end_connected": state.peer is not None and state.peer.connectionState == "connected",
                "face_p50_ms": face.get("p50_ms"), "frames": face.get("count"),
                "source_error": str(self.source.error) if self.source and self.source.error else None}

    async def stop(self) -> None:
        if self.call is not None:
            await self.call.stop()
            self.call = None
