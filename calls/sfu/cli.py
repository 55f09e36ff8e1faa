"""`evercall serve --sfu janus [--sfu-url URL]`: the call's options for a room of several far ends."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sfu", choices=("janus",), default=None,
                        help="several far ends in one call through a Janus videoroom (started by evercall unless "
                             "--sfu-url names one); the operator's room page makes one link per person")
    parser.add_argument("--sfu-url", metavar="URL", default=None,
                        help="a running Janus's HTTP API (e.g. http://127.0.0.1:8088/janus); its API secret, if "
                             "any, from $EVERCALL_JANUS_SECRET")


def extend(options: Any, args: argparse.Namespace) -> None:
    """Add the room to the call when --sfu was given (ServeOptions.extensions)."""
    if getattr(args, "sfu", None) is None:
        if getattr(args, "sfu_url", None):
            from engine.errors import EvercallError

            raise EvercallError("--sfu-url needs --sfu janus")
        return
    import os

    from calls.sfu.room import SfuRoom

    options.extensions.append(SfuRoom(args.sfu_url, os.environ.get("EVERCALL_JANUS_SECRET")).attach)


def announce(call: Any, args: argparse.Namespace) -> None:
    if getattr(args, "sfu", None) is not None:
        print(f"room page (one link per person, withdraw each on its own): {call.operator_url}/sfu", flush=True)
