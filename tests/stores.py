"""A private persona store for tests: its passphrase and the persona commands driven in-process."""

from __future__ import annotations

import argparse

from calls import persona_cli

PASS = "correct horse battery staple"


def cli(argv: list[str]) -> int:
    """`evercall persona …` / `evercall objection …` in this process; returns the exit code."""
    parser = argparse.ArgumentParser(prog="evercall")
    persona_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
