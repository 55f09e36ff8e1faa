"""`evercall cluster serve | status`: the studio's front door on a Ray cluster, and what runs where.

  evercall cluster serve --address auto      the front door: places calls on workers (prints its admin link)
      POST {link}/calls {"persona": NAME, "source": "browser"}  -> the call's operator and far-end links
      POST {link}/calls/{id}/end                                 -> ends it
      GET  {link}/status.json                                    -> workers, calls, load, ended calls and why
  evercall cluster status --address auto     workers, their calls and their load, from any machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys


def register(sub) -> None:
    cluster = sub.add_parser("cluster", help="place calls on GPU workers of a Ray cluster (needs the cluster extra)",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = cluster.add_subparsers(dest="cluster_command", metavar="serve|status", required=True)
    serve = inner.add_parser("serve", help="run the front door")
    serve.add_argument("--address", default="auto", help="the Ray cluster (default: the one `ray start` made here)")
    serve.add_argument("--host", default="127.0.0.1", help="the front door's address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--gpu-share", type=float, default=0.0, metavar="F",
                       help="the GPU fraction each call asks for (e.g. 0.25 for four calls a GPU)")
    serve.add_argument("--cpu-share", type=float, default=0.0, metavar="N", help="CPU cores each call asks for")
    serve.add_argument("--worker-host", default=None,
                       help="where workers' call servers listen (default: each worker's cluster address, with TLS)")
    serve.add_argument("--sfu", choices=("janus",), default=None,
                       help="every call's far ends join through a Janus room on its worker (several per call)")
    serve.add_argument("--sfu-url", default=None, metavar="URL", help="a running Janus for every call instead")
    serve.set_defaults(func=cmd_serve)
    status = inner.add_parser("status", help="list workers, their calls and their load")
    status.add_argument("--address", default="auto")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)


def _ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        from engine.errors import EvercallError

        raise EvercallError("Ray is not installed: install the cluster extra with `bash install.sh --cluster`")


def cmd_status(args: argparse.Namespace) -> int:
    _ray()
    from calls.cluster.front import cluster_status, connect

    connect(args.address)
    status = cluster_status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    if not status["workers"]:
        print("no worker takes calls: start one with `ray start --address ... --resources '{\"evercall_call\": N}'`")
    for w in status["workers"]:
        print(f"worker {w['node_id'][:12]} at {w['address']}: {w['load']} calls, {w['gpus']:g} GPUs")
        for c in w["calls"]:
            print(f"  call {c['id']}: {c.get('state')}, far end {'in' if c.get('far_end_connected') else 'not in'} "
                  f"the call, face p50 {c.get('face_p50_ms')} ms")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from calls.tls import require_tls_for

    require_tls_for(args.host, False)  # the front door speaks plain HTTP: loopback only (put it behind TLS)
    _ray()
    from aiohttp import web

    from calls.cluster.front import FrontDoor, connect
    from engine.errors import EvercallError
    from engine.home import default_home
    from engine.vault import resolve_passphrase

    connect(args.address)
    front = FrontDoor(args.gpu_share, args.cpu_share, resolve_passphrase(default_home()), host=args.worker_host,
                      sfu=args.sfu is not None, sfu_url=args.sfu_url)
    token = secrets.token_urlsafe(16)

    def allowed(request: web.Request) -> None:
        if not secrets.compare_digest(request.match_info["token"].encode("utf-8", "replace"), token.encode()):
            raise web.HTTPForbidden(text="wrong front-door code\n")

    async def place(request: web.Request) -> web.Response:
        allowed(request)
        body = await request.json()
        persona = body.get("persona") if isinstance(body, dict) else None
        source = body.get("source", "browser") if isinstance(body, dict) else "browser"
        if not isinstance(persona, str) or source not in ("browser", "demo"):
            return web.Response(status=400, text="expected {\"persona\": NAME, \"source\": \"browser\"|\"demo\"}\n")
        try:
            call = await asyncio.to_thread(front.place, persona, source)
        except EvercallError as exc:
            return web.Response(status=409, text=f"{exc}\n")
        return web.json_response(call.describe())

    async def end(request: web.Request) -> web.Response:
        allowed(request)
        try:
            return web.json_response((await asyncio.to_thread(front.end, request.match_info["ident"])).describe())
        except EvercallError as exc:
            return web.Response(status=404, text=f"{exc}\n")

    async def status(request: web.Request) -> web.Response:
        allowed(request)
        return web.json_response(await asyncio.to_thread(front.status))

    async def watchdog(app: web.Application) -> None:
        async def loop() -> None:
            while True:  # a failed check is said and tried again: the watchdog must not die quietly
                try:
                    for call in await asyncio.to_thread(front.check):
                        print(f"call {call.ident}: {call.ended}", file=sys.stderr, flush=True)
                except Exception as err:  # noqa: BLE001 - any failure of one round
                    print(f"watchdog: checking the workers failed ({err!r}); trying again", file=sys.stderr,
                          flush=True)
                await asyncio.sleep(1.0)
        app["watchdog"] = asyncio.ensure_future(loop())

    app = web.Application(client_max_size=4000)
    app.add_routes([web.post("/cluster/{token}/calls", place), web.post("/cluster/{token}/calls/{ident}/end", end),
                    web.get("/cluster/{token}/status.json", status)])
    app.on_startup.append(watchdog)
    print(f"front door: http://{args.host}:{args.port}/cluster/{token}", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0
