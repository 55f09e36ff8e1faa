"""The `evercall` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from calls.media_options import add_media_arguments
from calls.sfu import cli as sfu_cli
from engine.errors import EvercallError
from calls.assembly import CallChoices
from calls.call_inputs import (PERSONA_HELP, add_face_options, add_persona_and_source, persona_from_args,
                               source_from_args)

DESCRIPTION = """\
evercall: a real-time relay that presents a consented persona's face and voice in a video call.

Start with the built-in demo (no camera, no persona of your own needed):
  evercall serve --demo          then open the printed /join/ link in a browser
Store a persona, with the consent of the next of kin, then call or render with it:
  evercall persona create NAME --photo face.jpg --voice voice.wav --consent-by "..." \\
      --relationship "..." --evidence consent.pdf
  evercall serve --persona NAME
  evercall render --persona NAME --input operator.mp4 --output out.mp4
A persona needs one photo of the face and 15-90 s of the person speaking (3 s at least).
"""


def cmd_serve(args: argparse.Namespace) -> int:
    from calls.media_options import media_options_from_args
    from calls.serve import ServeOptions, serve_forever

    options = ServeOptions(args.host, args.port, choices=CallChoices.from_args(args),
                           invite_ttl_s=args.invite_hours * 3600,
                           tls_cert=args.tls_cert, tls_key=args.tls_key, tls_self_signed=args.tls_self_signed,
                           media=media_options_from_args(args))
    sfu_cli.extend(options, args)
    options.ssl_context()  # refuse an unsafe bind before the persona and camera are opened
    persona = persona_from_args(args, "call")
    source = source_from_args(args)

    def announce(call) -> None:
        mode = call.state.mode if call.state.mode == args.mode else f"{call.state.mode} (chosen by {args.mode})"
        print(f"persona: {persona.name}; face mode: {mode}; press Ctrl-C to end the call", flush=True)
        print("far-end link (send this to the person you call):", flush=True)
        print(call.join_url, flush=True)
        print(f"operator page: {call.operator_url}", flush=True)
        print(f"the link expires {call.state.invite.describe()['expires_at']}", flush=True)
        if call.tls_fingerprint:
            print(f"TLS certificate SHA-256 fingerprint: {call.tls_fingerprint}", flush=True)
        sfu_cli.announce(call, args)

    asyncio.run(serve_forever(persona, source, options, announce))
    print("call ended", flush=True)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from calls.render import render

    persona = persona_from_args(args, "render")
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise EvercallError("--output must differ from --input: the input would be overwritten")
    summary = render(persona, Path(args.input), Path(args.output), CallChoices.from_args(args),
                     progress=sys.stderr.isatty())
    for line in summary.lines():
        print(line)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """The benchmarks sit above calls/ in the layers: run them as their own program, same arguments."""
    import subprocess

    return subprocess.call([sys.executable, "-m", "benchmarks", *args.bench_args])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evercall", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="start a call and print the far-end link",
                           description="Start the relay. The far end opens the printed /join/ link in a browser; "
                                       "the operator page shows the outgoing picture, the far end and live figures.")
    add_persona_and_source(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    add_face_options(serve)
    serve.add_argument("--invite-hours", type=float, default=12.0,
                       help="how long the far-end link stays valid (default 12 hours)")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="HTTPS certificate (needed off loopback)")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert")
    serve.add_argument("--tls-self-signed", action="store_true",
                       help="make (once) and use a self-signed certificate; its fingerprint is printed so the far "
                            "end can check it")
    add_media_arguments(serve)
    sfu_cli.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    rend = sub.add_parser("render", help="convert a video file offline",
                          description="Apply the persona's face and voice to a video file, frame by frame. "
                                      "Keeps the frame count, frame rate and audio duration.")
    rend.add_argument("--persona", metavar="NAME|DIR", help=PERSONA_HELP)
    rend.add_argument("--demo", action="store_true", help="use the built-in sample persona")
    rend.add_argument("--input", required=True, metavar="IN.mp4", help="the operator's video")
    rend.add_argument("--output", required=True, metavar="OUT.mp4", help="where to write the result (MP4)")
    add_face_options(rend)
    rend.set_defaults(func=cmd_render)

    from calls import device_cli, models_cli, persona_cli, verify_cli

    persona_cli.register(sub)
    models_cli.register(sub)
    device_cli.register(sub)
    verify_cli.register(sub)
    from calls.cluster import cli as cluster_cli

    cluster_cli.register(sub)
    bench = sub.add_parser("bench", help="measure latency, frame rate and filter speed on this machine "
                                         "(`evercall bench --help` says how)", add_help=False)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = rest  # all of them are the benchmark program's (see cmd_bench)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        from calls.quiet import quiet_native_logs

        quiet_native_logs()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except EvercallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
