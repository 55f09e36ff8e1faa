"""The front door of a studio: calls placed on GPU workers of a Ray cluster, one actor per call.

Why Ray: it already keeps a cluster's machines, their resources and their processes (`ray start` on each
machine), places an actor where its resources are free, and reports an actor whose process or machine
died. Evercall adds only what a call needs:
- each worker machine declares how many calls it takes as a custom resource (`ray start --resources
  '{"evercall_call": 4}'`; the number from `python -m benchmarks.bench_cluster cluster`), and each call
  asks for one of them plus its share of a GPU (`--gpu-share`) or CPU cores;
- the front door picks the worker with the most free call slots and pins the actor there; when no worker
  has a free slot the call is refused at once with one line, never queued behind a full worker;
- a watchdog pings every call's actor each second: a call whose worker died is ended with a message for
  the operator, and Ray frees its resources with the process;
- the persona never leaves the worker's own encrypted store, and the store passphrase reaches the actor
  only sealed to that actor's key (calls/cluster/sealed.py).
Consent is checked by the front door before a call is placed and again by the worker when it opens the
persona; the worker's call writes its own audit records (invite, start, end) as any call does.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EvercallError

log = logging.getLogger(__name__)
SLOT = "evercall_call"  # the custom resource: one per call a worker machine can take
NAMESPACE = "evercall"
PLACE_TIMEOUT_S = 60.0


class ClusterFull(EvercallError):
    """No worker has a free call slot."""


@dataclass
class PlacedCall:
    """One call on one worker, as the front door knows it."""

    ident: str
    node_id: str
    actor: Any
    persona: str
    info: dict = field(default_factory=dict)
    placed_at: float = field(default_factory=time.time)
    ended: str | None = None  # why it ended (shown to the operator), None while it runs

    def describe(self) -> dict:
        return {"id": self.ident, "node_id": self.node_id, "persona": self.persona, "placed_at": self.placed_at,
                "state": "ended" if self.ended else "running", "message": self.ended,
                **{k: self.info.get(k) for k in ("operator_url", "join_url", "room_url", "tls_fingerprint")}}


def connect(address: str | None = "auto") -> None:
    """Join the Ray cluster at `address` (or the one this process already joined)."""
    import ray

    if ray.is_initialized():
        return
    if address not in (None, "auto") and ":" in address:  # Ray itself would wait minutes for a GCS that is not there
        import socket

        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.split("//")[-1], int(port)), timeout=3).close()
        except (OSError, ValueError) as exc:
            raise EvercallError(f"no Ray cluster answers at {address} ({exc.__class__.__name__}): check the "
                                "address `ray start --head` printed") from exc
    try:
        ray.init(address=address, namespace=NAMESPACE, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        raise EvercallError(f"no Ray cluster at {address!r} ({exc.__class__.__name__}): start one with "
                            f"`ray start --head --resources '{{\"{SLOT}\": 2}}'` on the first machine") from exc


def workers() -> list[dict]:
    """The cluster's live machines that take calls: node id, address, call slots."""
    import ray

    out = []
    for node in ray.nodes():
        slots = node.get("Resources", {}).get(SLOT, 0)
        if node.get("Alive") and slots >= 1:
            out.append({"node_id": node["NodeID"], "address": node.get("NodeManagerAddress"), "slots": int(slots),
                        "gpus": node.get("Resources", {}).get("GPU", 0)})
    return out


class FrontDoor:
    """Places calls on workers, watches them, ends and lists them."""

    def __init__(self, gpu_share: float = 0.0, cpu_share: float = 0.0, store_passphrase: str | None = None,
                 host: str | None = None, sfu_url: str | None = None, sfu: bool = False) -> None:
        """host: where the workers' call servers listen (default: each worker's own cluster address, with
        TLS since that is not loopback; "127.0.0.1" when every worker is on this machine)."""
        self.gpu_share, self.cpu_share = gpu_share, cpu_share
        self.host = host
        self.sfu, self.sfu_url = sfu or bool(sfu_url), sfu_url
        self.passphrase = store_passphrase
        self.calls: dict[str, PlacedCall] = {}

    # -- placement -----------------------------------------------------------------------------------
    def _calls_now(self) -> list[PlacedCall]:
        """A snapshot of the calls: check and status run in a worker thread while the loop places calls."""
        return list(self.calls.values())

    def choose_worker(self) -> dict:
        """The live worker with the most free call slots; ClusterFull when every one is full."""
        running = Counter(c.node_id for c in self._calls_now() if c.ended is None)
        candidates = [(w["slots"] - running[w["node_id"]], w) for w in workers()]
        free = [(n, w) for n, w in candidates if n >= 1]
        if not free:
            total = sum(w["slots"] for _, w in candidates)
            raise ClusterFull(f"every worker is full ({total} call slots on {len(candidates)} workers in use): "
                              "end a call, or add a worker with `ray start --address ... --resources "
                              f"'{{\"{SLOT}\": N}}'`")
        return max(free, key=lambda item: item[0])[1]

    def _check_consent(self, persona: str) -> None:
        if persona == "demo":
            return
        from engine.store import PersonaStore

        PersonaStore(passphrase=self.passphrase).check_use(persona, "call")

    def place(self, persona: str, source: str = "browser", choices: dict | None = None) -> PlacedCall:
        """Place a call on a worker and start it there; returns once its links are ready."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from calls.cluster.sealed import seal
        from calls.cluster.worker import CallActor

        self._check_consent(persona)
        worker = self.choose_worker()
        ident = secrets.token_hex(6)
        options: dict[str, Any] = {
            "name": f"call-{ident}", "namespace": NAMESPACE, "max_restarts": 0, "max_concurrency": 16,
            "resources": {SLOT: 1}, "num_cpus": self.cpu_share, "num_gpus": self.gpu_share,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(worker["node_id"], soft=False),
        }
        actor = ray.remote(CallActor).options(**options).remote()
        call = PlacedCall(ident, worker["node_id"], actor, persona)
        self.calls[ident] = call
        try:
            public = ray.get(actor.public_key.remote(), timeout=PLACE_TIMEOUT_S)
            spec = {"persona": persona, "source": source, "host": self.host or worker["address"], "choices": choices or {},
                    "sfu": self.sfu, "sfu_url": self.sfu_url,
                    "sealed": seal(self.passphrase, public) if self.passphrase and persona != "demo" else None}
            call.info = ray.get(actor.start.remote(spec), timeout=PLACE_TIMEOUT_S)
        except Exception as exc:
            ray.kill(actor)
            del self.calls[ident]
            if isinstance(exc, EvercallError):
                raise
            cause = getattr(exc, "cause", None) or exc
            raise EvercallError(f"the worker could not start the call ({str(cause).splitlines()[-1][:200]})") from exc
        return call

    # -- watching ------------------------------------------------------------------------------------
    def check(self, timeout: float = 2.0) -> list[PlacedCall]:
        """Ping every running call; end (with a message) those whose worker died. Returns the newly ended."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        running = [c for c in self._calls_now() if c.ended is None]
        if not running:
            return []
        alive_nodes = {w["node_id"] for w in workers()}
        pings = {c.ident: c.actor.ping.remote() for c in running}
        ray.wait(list(pings.values()), num_returns=len(pings), timeout=timeout)
        ended = []
        for call in running:
            try:
                ray.get(pings[call.ident], timeout=0.01)
                continue
            except GetTimeoutError:
                if call.node_id in alive_nodes:
                    continue  # busy, not dead
            except RayActorError:
                pass
            call.ended = ("the worker running this call stopped: the call has ended. Start it again and it "
                          "will be placed on another worker.")
            log.warning("call %s on node %s: worker lost", call.ident, call.node_id[:8])
            ray.kill(call.actor)  # frees its share at once if anything of it is left
            ended.append(call)
        return ended

    def end(self, ident: str) -> PlacedCall:
        import ray

        call = self.calls.get(ident)
        if call is None:
            raise EvercallError(f"no call {ident!r}")
        if call.ended is None:
            try:
                ray.get(call.actor.stop.remote(), timeout=10)
            except Exception:
                pass
            ray.kill(call.actor)
            call.ended = "ended by the operator"
        return call

    def status(self) -> dict:
        """Workers, their calls and their load (free slots), as `evercall cluster status` prints them."""
        calls, listed = self._calls_now(), []  # one snapshot for the whole report
        for w in workers():
            on = [c.describe() for c in calls if c.node_id == w["node_id"] and c.ended is None]
            listed.append({**w, "calls": on, "free": w["slots"] - len(on)})
        return {"workers": listed, "ended": [c.describe() for c in calls if c.ended]}


def cluster_status() -> dict:
    """What runs on the cluster, found from any machine in it: workers and the call actors on each."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a.get("namespace") == NAMESPACE and a["name"].startswith("call-")]
    by_node: dict[str, list] = {}
    for name in names:
        try:
            info = ray.get(ray.get_actor(name, namespace=NAMESPACE).status.remote(), timeout=5)
        except Exception as exc:
            info = {"state": f"unreachable ({exc.__class__.__name__})"}
        by_node.setdefault(info.get("node_id", "?"), []).append({"id": name[5:], **info})
    listed = []
    for w in workers():
        on = by_node.get(w["node_id"], [])
        listed.append({**w, "calls": on, "load": f"{len(on)}/{w['slots']}"})
    return {"workers": listed}
