"""`evercall verify FILE`: was this video or sound made by evercall, and in which call?

Both marks (the picture's and the voice's) carry 4-byte hashes of the persona id and the call id; the audit
log names every call and render with those ids, so a found mark is matched back to the record of the call
that produced it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

VERIFY_HELP = """\
Look for evercall's provenance marks in a video or sound file: a recording of a call, a render, a screen
recording of either, or just the sound (WAV, MP3, OGG, M4A...). Every frame evercall sends carries an
invisible mark, and so does its voice. Prints whether the file is synthetic, in what share of its windows
(one second of picture, three seconds of sound) a mark was found, and the call or render in this machine's
audit log that made it. Exit status 0 when a mark is found, 1 when none is.

Cropping, shifting or mirroring the picture removes its mark; rescaling and re-encoding do not. The voice
mark survives Opus, MP3, resampling and volume changes, but needs two seconds or more of sound.
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


def _streams(path: Path) -> tuple[bool, bool]:
    """(has picture, has sound); a file PyAV cannot open is left to the sound reader, which says why."""
    import av

    from engine.errors import MediaError

    if not path.is_file():
        raise MediaError(f"No file at {path}: check the path.")
    try:
        with av.open(str(path)) as container:
            cover = av.stream.Disposition.attached_pic  # an MP3's or M4A's cover picture is no video
            video = any(not (s.disposition & cover) for s in container.streams.video)
            return video, bool(container.streams.audio)
    except av.error.FFmpegError:
        return False, True


def _window_line(kind: str, found: int, total: int, span: str, whole_found: bool) -> str:
    if found:
        return f"{kind} mark found in {found} of {total} {span} windows ({100 * found / total:.0f}%)"
    if whole_found:
        return f"{kind} mark found only with the whole file read together (too faint in any single {span} window)"
    return f"no {kind} mark ({total} {span} windows checked)"


def cmd_verify(args: argparse.Namespace) -> int:
    from filters.watermark import verify_video
    from filters.watermark.voice import verify_audio

    path = Path(args.file)
    has_video, has_audio = _streams(path)
    lines: list[str] = []
    payloads: list[Any] = []
    if has_video:
        report = verify_video(path)
        lines.append(_window_line("picture", sum(w.found for w in report.windows), len(report.windows),
                                  "one-second", report.whole.found))
        if report.found:
            payloads.append(report)
    if has_audio:
        sound = verify_audio(path)
        if sound.seconds * 2 < 3 and not sound.found:
            lines.append(f"no voice mark: only {sound.seconds:.1f} s of sound, and the voice mark needs 2 s or more")
        else:
            lines.append(_window_line("voice", sum(w.found for w in sound.windows), len(sound.windows),
                                      "three-second", sound.whole.found))
        if sound.found:
            payloads.append(sound)
    if not payloads:
        beyond = [what for has, what in ((has_video, "a cropped, shifted or mirrored picture"),
                                         (has_audio, "sound cut to under 2 s")) if has]
        print(f"no evercall mark in {args.file}: it was not made by evercall"
              + (f", or it was edited beyond what the marks survive ({'; '.join(beyond)})" if beyond else ""))
        for line in lines:
            print(f"  {line}")
        return 1
    print(f"{args.file} was made by evercall:")
    for line in lines:
        print(f"  {line}")
    _name_calls(payloads)
    return 0


def _name_calls(reports: list[Any]) -> None:
    """Print each distinct payload's hashes and the audit records that match them."""
    from engine.home import audit_log

    distinct = {(r.persona_hash, r.call_hash): r for r in reports}
    if len(distinct) > 1:
        print("the picture and the voice carry different marks: the file was put together from two sources")
    try:
        records = audit_log().records()
    except Exception as exc:  # the mark stands on its own; the log only adds names
        for persona_hash, call_hash in distinct:
            print(f"persona hash {persona_hash}, call hash {call_hash}")
        print(f"(audit log not readable here: {exc})")
        return
    for persona_hash, call_hash in distinct:
        print(f"persona hash {persona_hash}, call hash {call_hash}")
        hits = matching_records(persona_hash, call_hash, records)
        if not hits:
            print("no call or render in this machine's audit log matches: it was made elsewhere")
        for record in hits:
            fields = record["fields"]
            print(f"audit #{record['seq']} {record['time']} {record['event']}: persona {fields['persona']}, "
                  f"call {fields['call']}" + (f", far end {fields['far_end']}" if "far_end" in fields else ""))


def register(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="say whether a video or sound file was made by evercall, and by which call",
                            description=VERIFY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("file", metavar="FILE",
                        help="the file to check: a video (MP4, WebM, MKV...) or sound (WAV, MP3, OGG, M4A...)")
    verify.set_defaults(func=cmd_verify)
