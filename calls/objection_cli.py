"""`evercall objection ...`: a family member's standing refusal of any likeness of a person.

Registered by persona_cli (it shares the store's --home); every leaf sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse

from engine.objections import ObjectionRegister

HELP = """\
A family member can refuse any likeness of a person, whoever else consented. While an objection stands,
`persona create`, every call and every render refuse a persona whose name or full name matches the
objected person (case and spacing ignored; when both birth years are known they must match too). The
refusal names the date of the objection, never who filed it.

The register is kept encrypted in $EVERCALL_HOME/objections/ (same passphrase as the personas) and every
filing and withdrawal is written to the audit log, so restoring an old copy of the register does not lift
an objection. Only the person who filed an objection can withdraw it, with the same document.
"""


def _register(args: argparse.Namespace) -> ObjectionRegister:
    return ObjectionRegister(getattr(args, "home", None))


def cmd_add(args: argparse.Namespace) -> int:
    item = _register(args).add(args.person, args.born, args.by, args.evidence)
    print(f"objection {item.id} filed on {item.filed_at[:10]}: no likeness of {item.person}"
          f"{f' (born {item.born})' if item.born else ''} can be created, called or rendered")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    items = _register(args).list()
    if not items:
        print("no objections filed")
    for item in items:
        print(item.describe())
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    item = _register(args).withdraw(args.evidence, person=args.person, objection_id=args.id)
    print(f"objection {item.id} to likenesses of {item.person} withdrawn on {item.withdrawn_at[:10]}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `objection` to the main CLI's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    objection = subparsers.add_parser("objection", help="file or withdraw a family member's objection",
                                      description=HELP, formatter_class=raw)
    sub = objection.add_subparsers(dest="objection_command", metavar="COMMAND", required=True)

    add = sub.add_parser("add", help="record that a family member refuses any likeness of a person",
                         description=HELP, formatter_class=raw)
    add.add_argument("--person", required=True, metavar="\"FULL NAME\"", help="the person no likeness may be made of")
    add.add_argument("--born", type=int, metavar="YEAR", help="their birth year (narrows the match)")
    add.add_argument("--by", required=True, metavar="\"NAME, RELATIONSHIP\"", help="who files the objection")
    add.add_argument("--evidence", required=True, metavar="FILE",
                     help="the signed objection (its SHA-256 is kept; the same file withdraws it)")
    add.set_defaults(func=cmd_add)

    listing = sub.add_parser("list", help="list objections (never who filed them)", description=HELP,
                             formatter_class=raw)
    listing.set_defaults(func=cmd_list)

    withdraw = sub.add_parser("withdraw", help="withdraw an objection, with the document it was filed with",
                              description=HELP, formatter_class=raw)
    withdraw.add_argument("--evidence", required=True, metavar="FILE", help="the document the objection was "
                          "filed with")
    withdraw.add_argument("--person", metavar="\"FULL NAME\"", help="whose objection (when the file is not enough)")
    withdraw.add_argument("--id", help="the objection's id from `objection list`")
    withdraw.set_defaults(func=cmd_withdraw)

    for leaf in (add, listing, withdraw):
        leaf.add_argument("--home", help="store folder (overrides EVERCALL_HOME)", default=argparse.SUPPRESS)
