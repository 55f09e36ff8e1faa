"""Time to the first converted frame: a local call against a call placed on a Ray worker, and calls per node.

Local: what `evercall serve --demo` costs an operator, from launching a fresh Python process to the first
persona frame out of its pipeline (imports, persona, filters, server, first frame through the face filter).
Cluster: on a running local two-node cluster, from the front door's `place()` to the first persona frame
out of the pipeline in the worker's actor (placement, the actor's process, the same imports and build).
Alternated, `rounds` of each; the medians and their ratio are reported.

Calls per node: on one worker that declares 4 call slots, 1 then 2 demo calls at once, each call's face
frames per second over 8 s, as the worker's actors report them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import time

_LOCAL = textwrap.dedent("""
    import asyncio, time
    from calls.demo import demo_assets
    from calls.serve import ServeOptions, start_call
    from calls.sources import FileSource
    from engine.resolve import open_persona

    async def main():
        demo = demo_assets()
        persona = open_persona(demo.persona_dir, "call")
        call = await start_call(persona, FileSource(demo.operator_clip, loop=True), ServeOptions(port=0))
        _, item = 0, None
        while item is None:
            _, item = await call.state.pipeline.video_out.wait_newer(0, timeout=0.5)
        print("FIRST", time.time(), flush=True)
        await call.stop()
    asyncio.run(main())
""")


def local_first_frame_s() -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", _LOCAL], capture_output=True, text=True, timeout=180)
    line = next((x for x in out.stdout.splitlines() if x.startswith("FIRST ")), None)
    if line is None:
        raise RuntimeError(f"the local call did not start: {out.stderr[-800:]}")
    return float(line.split()[1]) - t0


def cluster_first_frame_s(front) -> float:
    import ray

    t0 = time.time()
    call = front.place("demo", source="demo")
    try:
        first = ray.get(call.actor.first_frame.remote(120.0), timeout=150)
        if first is None:
            raise RuntimeError("no converted frame from the worker")
        return first - t0
    finally:
        front.end(call.ident)


def calls_per_node(seconds: float = 8.0) -> list[dict]:
    """Face fps per call with 1 and 2 demo calls on one worker (a separate one-node cluster)."""
    import ray
    from ray.cluster_utils import Cluster

    from calls.cluster.front import FrontDoor

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                             "resources": {"evercall_call": 4}})
    ray.init(address=cluster.address, namespace="evercall", include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    rows = []
    try:
        front = FrontDoor(host="127.0.0.1")
        for n in (1, 2):
            calls = [front.place("demo", source="demo") for _ in range(n)]
            for call in calls:
                ray.get(call.actor.first_frame.remote(120.0), timeout=150)
            before = [ray.get(c.actor.status.remote())["frames"] or 0 for c in calls]
            time.sleep(seconds)
            after = [ray.get(c.actor.status.remote())["frames"] or 0 for c in calls]
            rows.append({"calls": n, "face_fps_per_call": [round((a - b) / seconds, 1) for a, b in zip(after, before)]})
            for call in calls:
                front.end(call.ident)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return rows


def measure_cluster(rounds: int = 3) -> dict:
    import os

    import ray
    from ray.cluster_utils import Cluster

    from calls.cluster.front import FrontDoor

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1, resources={"evercall_call": 1})
    ray.init(address=cluster.address, namespace="evercall", include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    cluster.wait_for_nodes()
    local: list[float] = []
    placed: list[float] = []
    try:
        front = FrontDoor(host="127.0.0.1")
        for _ in range(rounds):  # alternated: a burst of load elsewhere hits both alike
            local.append(local_first_frame_s())
            placed.append(cluster_first_frame_s(front))
    finally:
        ray.shutdown()
        cluster.shutdown()
    lm, cm = statistics.median(local), statistics.median(placed)
    return {"local_first_frame_s": [round(x, 2) for x in local], "cluster_first_frame_s": [round(x, 2) for x in placed],
            "local_median_s": round(lm, 2), "cluster_median_s": round(cm, 2), "ratio": round(cm / lm, 2),
            "limit_ratio": 1.5, "ok": cm / lm <= 1.5, "calls_per_node": calls_per_node()}
