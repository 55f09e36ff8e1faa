"""A Janus WebRTC server (Debian package `janus`) started by evercall, and a small client for its HTTP API.

Why Janus and why this shape:
- Janus's videoroom plugin is a well-kept SFU: the relay publishes the persona once and Janus forwards the
  packets to every far end, so the relay encodes once however many people join.
- Evercall starts its own Janus with a private configuration (only the HTTP transport, bound to
  127.0.0.1 on a free port, an API secret, only the videoroom plugin): nothing but the relay can speak to
  it; browsers never see its API. Their signalling goes through the relay's own token-checked routes
  (calls/sfu/room.py), so the pages keep a strict `connect-src 'self'`.
- The client uses Janus's plain HTTP API with one long-poll loop per session that hands each event to
  whoever waits on its transaction (or on its handle, for events Janus sends unasked).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from engine.errors import EvercallError

log = logging.getLogger(__name__)
JANUS_LIBS = Path("/usr/lib/x86_64-linux-gnu/janus")
OTHER_PLUGINS = ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "streaming",
                 "textroom", "videocall", "voicemail")
OTHER_TRANSPORTS = ("websockets", "mqtt", "nanomsg", "pfunix", "rabbitmq")


class JanusError(EvercallError):
    """Janus refused a request or could not be reached (its message is kept)."""


def janus_binary() -> str | None:
    return shutil.which("janus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _libs_folder() -> Path:
    """Where the Debian package keeps Janus's plugins (multiarch path, or what `janus` was built with)."""
    if JANUS_LIBS.is_dir():
        return JANUS_LIBS
    found = sorted(Path("/usr/lib").glob("*/janus/plugins"))
    if found:
        return found[0].parent
    raise JanusError("Janus's plugins were not found: install it with `bash install.sh --cluster` "
                     "(apt-get install janus)")


class JanusServer:
    """A private Janus process: HTTP API on 127.0.0.1:`port`, videoroom only, with an API secret."""

    def __init__(self, interface: str = "127.0.0.1", port: int | None = None, rtp_ports: str = "20000-40000") -> None:
        self.interface = interface
        self.port = port or _free_port()
        self.rtp_ports = rtp_ports
        self.api_secret = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"

    def _write_config(self, folder: Path) -> None:
        libs = _libs_folder()
        disabled_plugins = ",".join(f"libjanus_{p}.so" for p in OTHER_PLUGINS)
        disabled_transports = ",".join(f"libjanus_{t}.so" for t in OTHER_TRANSPORTS)
        (folder / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{folder}"
  plugins_folder = "{libs / 'plugins'}"
  transports_folder = "{libs / 'transports'}"
  events_folder = "{libs / 'events'}"
  loggers_folder = "{libs / 'loggers'}"
  debug_level = 3
  admin_secret = "{secrets.token_urlsafe(24)}"
  api_secret = "{self.api_secret}"
  session_timeout = 60
}}
media: {{ rtp_port_range = "{self.rtp_ports}" }}
nat: {{ nice_debug = false ice_ignore_list = "vmnet" }}
plugins: {{ disable = "{disabled_plugins}" }}
transports: {{ disable = "{disabled_transports}" }}
events: {{ broadcast = false }}
""")
        (folder / "janus.transport.http.jcfg").write_text(f"""general: {{
  json = "compact"
  base_path = "/janus"
  http = true
  port = {self.port}
  ip = "127.0.0.1"
  https = false
}}
admin: {{ admin_http = false }}
""")
        (folder / "janus.plugin.videoroom.jcfg").write_text(
            f'general: {{ admin_key = "{secrets.token_urlsafe(24)}" lock_rtp_forward = true }}\n')

    async def start(self, timeout: float = 15.0) -> "JanusServer":
        exe = janus_binary()
        if exe is None:
            raise JanusError("`janus` is not installed: install it with `bash install.sh --cluster` "
                             "(apt-get install janus), or point to a running one with --sfu-url")
        self._dir = Path(tempfile.mkdtemp(prefix="evercall-janus-"))
        self._write_config(self._dir)
        log_path = self._dir / "janus.log"
        # The videoroom needs an admin key to create rooms only when one is set: we create rooms with it.
        args = [exe, "-F", str(self._dir), "-C", str(self._dir / "janus.jcfg"), "-i", self.interface,
                "-r", self.rtp_ports, "-o", "-L", str(log_path), "-N"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise JanusError(f"Janus exited at start (code {self.proc.returncode}): "
                                     f"{self.log_tail(400)}")
                try:
                    async with session.get(self.url + "/info", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        info = await resp.json(content_type=None)
                        if "janus.plugin.videoroom" in info.get("plugins", {}):
                            return self
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    pass
                await asyncio.sleep(0.1)
        await self.stop()
        raise JanusError(f"Janus did not answer on {self.url} within {timeout:.0f} s")

    def admin_key(self) -> str:
        text = (self._dir / "janus.plugin.videoroom.jcfg").read_text() if self._dir else ""
        return text.split('admin_key = "', 1)[1].split('"', 1)[0] if 'admin_key = "' in text else ""

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self._dir / "janus.log").read_text(errors="replace")[-chars:] if self._dir else ""
        except OSError:
            return ""

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class JanusSession:
    """One Janus API session: attach plugin handles, send them messages, receive their events."""

    def __init__(self, url: str, api_secret: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_secret = api_secret
        self.id: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._handle_events: dict[int, asyncio.Queue] = {}
        self._poller: asyncio.Task | None = None

    def _body(self, janus: str, **fields: Any) -> dict:
        body = {"janus": janus, "transaction": secrets.token_hex(8), **fields}
        if self.api_secret:
            body["apisecret"] = self.api_secret
        return body

    async def _post(self, path: str, body: dict) -> dict:
        assert self._http is not None
        try:
            async with self._http.post(self.url + path, json=body) as resp:
                reply = await resp.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            raise JanusError(f"cannot reach Janus at {self.url} ({exc.__class__.__name__}): is it running?") from exc
        if reply.get("janus") == "error":
            raise JanusError(f"Janus: {reply.get('error', {}).get('reason', 'error')}")
        return reply

    async def open(self) -> "JanusSession":
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40))
        reply = await self._post("", self._body("create"))
        self.id = reply["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())
        return self

    async def _poll(self) -> None:
        """Long-poll the session's events (this also keeps the session alive)."""
        assert self._http is not None
        params = {"maxev": "10"}
        if self.api_secret:
            params["apisecret"] = self.api_secret
        while True:
            try:
                async with self._http.get(f"{self.url}/{self.id}", params=params) as resp:
                    events = await resp.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Janus event poll failed (%s); retrying", exc.__class__.__name__)
                await asyncio.sleep(1.0)
                continue
            for event in events if isinstance(events, list) else [events]:
                self._dispatch(event)

    def _dispatch(self, event: dict) -> None:
        kind = event.get("janus")
        if kind in ("keepalive", "ack"):
            return
        fut = self._pending.pop(event.get("transaction", ""), None)
        if fut is not None and not fut.done():
            fut.set_result(event)
            return
        queue = self._handle_events.get(event.get("sender"))
        if queue is not None:
            queue.put_nowait(event)

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> "JanusHandle":
        reply = await self._post(f"/{self.id}", self._body("attach", plugin=plugin))
        handle = JanusHandle(self, reply["data"]["id"])
        self._handle_events[handle.id] = handle.events
        return handle

    async def request(self, handle_id: int, body: dict, jsep: dict | None = None, timeout: float = 15.0) -> dict:
        """Send a plugin message; return its synchronous reply or, for asynchronous requests, the event that
        answers it (Janus first acks, then sends the event with the same transaction)."""
        message = self._body("message", body=body)
        if jsep is not None:
            message["jsep"] = jsep
        fut = asyncio.get_running_loop().create_future()
        self._pending[message["transaction"]] = fut
        try:
            reply = await self._post(f"/{self.id}/{handle_id}", message)
            if reply.get("janus") == "success":
                return reply
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(message["transaction"], None)

    async def handle_call(self, handle_id: int, janus: str, **fields: Any) -> dict:
        return await self._post(f"/{self.id}/{handle_id}", self._body(janus, **fields))

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._http is not None:
            if self.id is not None:
                try:
                    await self._post(f"/{self.id}", self._body("destroy"))
                except Exception:
                    pass
            await self._http.close()
            self._http = None


def plugin_data(reply: dict) -> dict:
    """The plugin's answer in a reply or event; a videoroom error becomes a JanusError."""
    data = reply.get("plugindata", {}).get("data", {})
    if "error" in data:
        raise JanusError(f"Janus videoroom: {data['error']}")
    return data


class JanusHandle:
    """One plugin handle (one PeerConnection on Janus's side)."""

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session, self.id = session, handle_id
        self.events: asyncio.Queue = asyncio.Queue()

    async def request(self, body: dict, jsep: dict | None = None) -> tuple[dict, dict | None]:
        reply = await self.session.request(self.id, body, jsep)
        return plugin_data(reply), reply.get("jsep")

    async def trickle_done(self) -> None:
        await self.session.handle_call(self.id, "trickle", candidate={"completed": True})

    async def detach(self) -> None:
        self.session._handle_events.pop(self.id, None)
        try:
            await self.session.handle_call(self.id, "detach")
        except JanusError:
            pass
