"""`evercall verify VIDEO`: was this video made by evercall, and in which call?

The watermark carries 4-byte hashes of the persona id and the call id; the audit log names every call and
render with those ids, so a found mark is matched back to the record of the call that produced it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

VERIFY_HELP = """\
Look for evercall's invisible provenance watermark in a video file (a recording of a call, a render, a
screen recording of either). Every frame evercall sends carries it. Prints whether the file is synthetic,
in what share of its one-second windows the mark was found, and the call or render in this machine's audit
log that made it. Exit status 0 when the mark is found, 1 when it is not.

Cropping, shifting or mirroring the picture removes the mark; rescaling and re-encoding do not.
"""


def matching_records(persona_hash: str | None, call_hash: str | None, records: list[dict[str, Any]]) -> list[dict]:
    """Audit records whose persona and call ids hash to the watermark's."""
    from filters.watermark.embed import id_hash

    hits = []
    for record in records:
        fields = record.get("fields", {})
        call, persona = fields.get("call"), fields.get("persona")
        if not call or not persona:
            continue
        if id_hash("call", str(call)).hex() == call_hash and id_hash("persona", str(persona)).hex() == persona_hash:
            hits.append(record)
    return hits


def cmd_verify(args: argparse.Namespace) -> int:
    from engine.home import audit_log
    from filters.watermark import verify_video

    report = verify_video(Path(args.video))
    windows = len(report.windows)
    found_windows = sum(w.found for w in report.windows)
    if not report.found:
        print(f"no evercall mark in {args.video} ({windows} one-second windows checked): it was not made by "
              "evercall, or its picture was cropped, shifted or mirrored")
        return 1
    print(f"{args.video} was made by evercall: mark found in {found_windows} of {windows} one-second windows "
          f"({100 * report.fraction_found:.0f}%)")
    print(f"persona hash {report.persona_hash}, call hash {report.call_hash}")
    try:
        records = audit_log().records()
    except Exception as exc:  # the mark stands on its own; the log only adds names
        print(f"(audit log not readable here: {exc})")
        return 0
    hits = matching_records(report.persona_hash, report.call_hash, records)
    if not hits:
        print("no call or render in this machine's audit log matches: it was made elsewhere")
    for record in hits:
        fields = record["fields"]
        print(f"audit #{record['seq']} {record['time']} {record['event']}: persona {fields['persona']}, "
              f"call {fields['call']}" + (f", far end {fields['far_end']}" if "far_end" in fields else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="say whether a video was made by evercall, and by which call",
                            description=VERIFY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("video", metavar="VIDEO", help="the video file to check (MP4, WebM, MKV...)")
    verify.set_defaults(func=cmd_verify)
