"""`evercall persona ...` and `evercall audit verify`: the consent-bound persona store from the shell.

The main CLI calls `register(subparsers)`; every leaf command sets `func(args) -> int` (the exit code)
and raises EvercallError subclasses, which the main CLI prints as one line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from engine.consent import USES, ConsentRecord, KinConsent, parse_kin, parse_scope, person_key, sha256_file
from engine.errors import ConsentError, PersonaError
from engine.store import PersonaStore

STORE_HELP = """\
Where and how personas are kept:
  EVERCALL_HOME        folder of the store (default ~/.local/share/evercall); personas live
                       encrypted under $EVERCALL_HOME/personas/, the audit log at audit.log.
  EVERCALL_PASSPHRASE  passphrase that encrypts the store (AES-256-GCM, key from scrypt). The first
                       `persona create` sets it; every later command needs the same one. If the
                       `keyring` package is installed, it can instead be saved in the OS keyring under
                       service 'evercall' with the store folder as user name. Lose it and the
                       personas cannot be recovered.
"""

CONSENT_HELP = """\
A persona is the photo and voice of a person who has died. It can only be created with the recorded
consent of the next of kin:
  --consent-by     who gave consent (full name of the next of kin)
  --relationship   their relationship to the person (e.g. daughter, spouse)
  --evidence       the consent document itself: a signed consent form, a scanned letter or an
                   e-mail exported as PDF. Its SHA-256 is kept with the record so the document can
                   later be matched to it; keep the document safe, the store does not keep a copy.
  --scope          what the consent allows: 'call' (live video calls), 'render' (offline videos),
                   or both (default: call,render)
  --expires        the day the consent ends (YYYY-MM-DD, UTC); from that day the persona is refused.
  --kin            every other next of kin, as "Full Name, relationship" (repeat it). Each of them
                   gives or withholds consent with their own document:
                     evercall persona consent NAME --by "Full Name" --evidence FILE [--withhold]
                   The persona can be used only when every recorded next of kin has consented;
                   `persona show` lists who is missing.
  --full-name, --born   the person's full name and birth year: a persona whose name or full name
                   (and birth year, when both are known) matches a standing objection is refused
                   (see `evercall objection --help`).
Consent can be revoked at any time with `evercall persona revoke` (by any next of kin who consented:
--by "Full Name"); the persona is then refused.
"""


def _store(args: argparse.Namespace) -> PersonaStore:
    return PersonaStore(getattr(args, "home", None))


def _expires(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write it as YYYY-MM-DD") from exc


def _kin(args: argparse.Namespace) -> tuple[str, list[KinConsent]]:
    """(relationship of --consent-by, every --kin entry as a pending KinConsent)."""
    kin = [KinConsent(*parse_kin(text)) for text in args.kin or []]
    relationship = args.relationship
    if not relationship:
        same = [entry for entry in kin if entry.key == person_key(args.consent_by or "")]
        if not same:
            raise ConsentError("give --relationship: the relationship of the person who consented to the person "
                               "(e.g. daughter), or list them with --kin \"Full Name, relationship\"")
        relationship = same[0].relationship
    return relationship, kin


def cmd_create(args: argparse.Namespace) -> int:
    evidence = Path(args.evidence)
    if not evidence.is_file():
        raise ConsentError(f"consent evidence {evidence} not found: give the signed consent document")
    relationship, kin = _kin(args)
    consent = ConsentRecord(consented_by=args.consent_by, relationship=relationship,
                            evidence_sha256=sha256_file(evidence), scope=parse_scope(args.scope),
                            expires=args.expires, evidence_name=evidence.name, kin=tuple(kin),
                            full_name=args.full_name or "", born=args.born)
    from calls.persona_video import keep_clip_likeness, persona_inputs
    from filters.factory import derive

    learnt: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="evercall-clip-") as folder:  # 0700: the clip's frame
        photo, voice, clip = persona_inputs(args, Path(folder))

        def derive_and_keep(persona):  # what was learnt, to say below what the photo (or clip) supports
            if clip is not None:
                keep_clip_likeness(persona, clip)  # the face is learnt once, from the clip's views
            learnt.update(derive(persona))
            return learnt

        print("checking the photo and learning the voice (up to a minute for a long sample)...", flush=True)
        persona_id = _store(args).create(args.name, photo, voice, consent, evidence, derive=derive_and_keep,
                                         face=args.face, notify=lambda note: print(note, flush=True))
    if "face_advice" in learnt:
        print(_face_advice_lines(learnt["face_advice"]))
    print(f"created persona '{args.name.strip()}' (id {persona_id}); consent by {consent.consented_by} "
          f"({consent.relationship}) for {', '.join(sorted(consent.scope))}")
    missing = [entry.who for entry in consent.missing()]
    if missing:
        print(f"it can be used once these next of kin consent too: {', '.join(missing)} "
              f"(`evercall persona consent \"{args.name.strip()}\" --by \"Full Name\" --evidence FILE`)")
    return 0


def cmd_consent(args: argparse.Namespace) -> int:
    consent = _store(args).decide(args.name, args.by, args.evidence, withhold=args.withhold)
    verb = "withheld consent to" if args.withhold else "consented to"
    who = next((entry.who for entry in consent.kin if entry.key == person_key(args.by)), args.by.strip())
    print(f"recorded: {who} {verb} persona '{args.name}'; consent is now {consent.status()}")
    return 0


def _edit(initial: str) -> str:
    """Open $VISUAL/$EDITOR on a temp file in a private folder; the folder is removed afterwards."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    folder = Path(tempfile.mkdtemp(prefix="evercall-notes-"))  # mkdtemp makes it 0700
    try:
        path = folder / "notes.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(initial)
        try:
            code = subprocess.call([*editor.split(), str(path)])
        except OSError as exc:
            raise PersonaError(f"cannot start the editor {editor!r} ({exc.strerror}): set EDITOR, or use "
                               "--from FILE") from exc
        if code != 0:
            raise PersonaError(f"the editor {editor!r} exited with code {code}: the notes were not changed")
        return path.read_text(encoding="utf-8")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cmd_notes(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.source:
        try:
            text = Path(args.source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PersonaError(f"cannot read notes from {args.source} ({exc}): give a UTF-8 text file") from exc
    elif args.edit:
        text = _edit(store.notes(args.name))
    elif args.clear:
        text = ""
    else:
        notes = store.notes(args.name)
        print(notes if notes else f"no notes for persona '{args.name}' (add them with --edit or --from FILE)")
        return 0
    store.set_notes(args.name, text)
    print(f"notes of persona '{args.name}' saved ({len(text.strip())} characters, encrypted); the operator page "
          "shows them during a call, the far end never receives them" if text.strip()
          else f"notes of persona '{args.name}' removed")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = _store(args).list()
    if not rows:
        print(f"no personas in {_store(args).home}")
        return 0
    for row in rows:
        print(f"{row['id']}  {row['name'] or '?'}  {row['status']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    info = _store(args).show(args.name)
    consent = info["consent"]
    lines = [f"name:          {info['name']}", f"id:            {info['id']}",
             f"created:       {info['created_at']}", f"consent:       {info['status']}",
             f"consented by:  {consent['consented_by']} ({consent['relationship']})",
             *(f"next of kin:   {KinConsent.from_dict(entry).describe()}" for entry in consent["kin"]),
             f"recorded:      {consent['recorded_at']}", f"scope:         {', '.join(consent['scope'])}",
             f"expires:       {consent['expires'] or 'never'}",
             f"evidence:      {consent['evidence_name']} sha256 {consent['evidence_sha256']}"]
    missing = [KinConsent.from_dict(e).who for e in consent["kin"] if e["state"] in ("pending", "withheld")]
    if missing:
        lines.append(f"missing:       consent of {', '.join(missing)}")
    if consent.get("full_name") or consent.get("born"):
        lines.append(f"person:        {consent.get('full_name') or info['name']}"
                     + (f", born {consent['born']}" if consent.get("born") else ""))
    if consent["revoked_at"]:
        lines.append(f"revoked:       {consent['revoked_at']} {consent['revoked_reason'] or ''}".rstrip())
    lines.append(f"notes:         {'yes (see `persona notes NAME`)' if info.get('has_notes') else 'none'}")
    lines.append(f"derived data:  {', '.join(info['derived']) or 'none'}")
    if "face_advice" in info["derived"]:
        try:  # the advice is kept encrypted with the likeness: it can be read once the persona may be used
            advice = _store(args).load(args.name).derived.get("face_advice", b"")
            lines.append(_face_advice_lines(advice))
        except (ConsentError, PersonaError):
            lines.append("face modes:    said here once every consent is in place")
    lines.append(f"stored:        {info['stored_bytes']} bytes, encrypted")
    print("\n".join(lines))
    return 0


def _face_advice_lines(advice: bytes) -> str:
    """The face-mode advice (filters/face/advice.py) as `persona create`/`show` print it."""
    first, *rest = advice.decode("utf-8", "replace").splitlines() or [""]
    return "\n".join([f"face modes:    {first}", *(f"               {line}" for line in rest)])


def cmd_revoke(args: argparse.Namespace) -> int:
    consent = _store(args).revoke(args.name, args.reason, by=args.by)
    print(f"consent for '{args.name}' revoked on {consent.revoked_at[:10]}; it can no longer be used. "
          f"Remove its data with `evercall persona delete {args.name}`")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise PersonaError(f"deleting persona '{args.name}' cannot be undone: add --yes to confirm")
        answer = input(f"Delete persona '{args.name}' and all its data for good? Type the name to confirm: ")
        if answer.strip() != args.name.strip():
            print("not deleted")
            return 1
    persona_id = _store(args).delete(args.name)
    print(f"deleted persona '{args.name}' (id {persona_id}): photo, voice, consent and derived data removed")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    store = _store(args)
    log = store.audit
    if (store.home / "vault.json").exists():
        store._unlock()  # the seals are checked with the passphrase's key: no passphrase, one-line error
    result = log.verify(expect_records=bool(store._bundles()))
    if result.ok:
        print(f"audit log {log.path}: {result.records} records, chain intact and sealed")
        return 0
    print(f"audit log {log.path}: {len(result.problems)} problem(s) in {result.records} records")
    for problem in result.problems:
        print(f"  {problem.kind}: {problem.message}")
    return 1


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="store folder (overrides EVERCALL_HOME)", default=argparse.SUPPRESS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `persona` and `audit` to the main CLI's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    persona = subparsers.add_parser("persona", help="create and manage consented personas",
                                    description="Create, list, show, revoke and delete personas.\n\n"
                                    + CONSENT_HELP + "\n" + STORE_HELP, formatter_class=raw)
    sub = persona.add_subparsers(dest="persona_command", metavar="COMMAND", required=True)

    create = sub.add_parser("create", help="store a new persona with the consent of the next of kin",
                            description=CONSENT_HELP + "\n" + STORE_HELP, formatter_class=raw)
    create.add_argument("name", metavar="NAME", help="display name, e.g. \"Grandma Rose\"")
    create.add_argument("--photo", help="a clear, front-facing photo (JPEG or PNG); with --video, optional")
    create.add_argument("--voice",
                        help="a recording of the person speaking (WAV, FLAC, MP3...; 15-90 s is best); with "
                             "--video, taken from the clip's soundtrack unless given")
    create.add_argument("--video", metavar="CLIP",
                        help="a short clip (about 10 s) of the person talking and turning a little: the face "
                             "is learnt from several views of it, both sides included")
    create.add_argument("--consent-by", required=True, help="full name of the next of kin who consented")
    create.add_argument("--relationship", help="their relationship to the person (may come from --kin)")
    create.add_argument("--kin", action="append", metavar="\"NAME, RELATIONSHIP\"",
                        help="another next of kin whose consent is needed too (repeatable)")
    create.add_argument("--full-name", help="the person's full name, if the persona's name is not it")
    create.add_argument("--born", type=int, metavar="YEAR", help="the person's birth year")
    create.add_argument("--evidence", required=True, metavar="FILE", help="the consent document (see above)")
    create.add_argument("--scope", default=",".join(sorted(USES)),
                        help="allowed uses, comma-separated: call, render (default: call,render)")
    create.add_argument("--expires", type=_expires, metavar="YYYY-MM-DD", help="day the consent ends")
    create.add_argument("--face", type=int, metavar="N", help="in a photo of several people, the face to use, "
                        "numbered from the left (default: the largest)")
    create.set_defaults(func=cmd_create)

    listing = sub.add_parser("list", help="list personas and their consent status", description=STORE_HELP,
                             formatter_class=raw)
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="show a persona's consent record (never its photo or voice)",
                          description=STORE_HELP, formatter_class=raw)
    show.add_argument("name", metavar="NAME", help="persona name or id")
    show.set_defaults(func=cmd_show)

    revoke = sub.add_parser("revoke", help="revoke consent: the persona can no longer be used",
                            description="Record that the next of kin withdrew consent. The persona stays "
                            "stored (and listed as revoked) until you delete it.\n\n" + STORE_HELP,
                            formatter_class=raw)
    revoke.add_argument("name", metavar="NAME", help="persona name or id")
    revoke.add_argument("--reason", help="why consent was withdrawn (kept in the record and audit log)")
    revoke.add_argument("--by", metavar="NAME", help="the next of kin who takes their consent back")
    revoke.set_defaults(func=cmd_revoke)

    consent = sub.add_parser("consent", help="record one next of kin's consent (or refusal) with their document",
                             description="Record that a next of kin named with --kin at creation consents "
                             "(or, with --withhold, refuses). The persona can be used only when every recorded "
                             "next of kin has consented.\n\n" + STORE_HELP, formatter_class=raw)
    consent.add_argument("name", metavar="NAME", help="persona name or id")
    consent.add_argument("--by", required=True, metavar="\"FULL NAME\"", help="the next of kin, as recorded")
    consent.add_argument("--evidence", required=True, metavar="FILE",
                         help="their own signed document (its SHA-256 is kept)")
    consent.add_argument("--withhold", action="store_true", help="record a refusal instead of a consent")
    consent.set_defaults(func=cmd_consent)

    notes = sub.add_parser("notes", help="the operator's private notes on a persona (shown only to the operator)",
                           description="Notes that help the operator stay in character: the family's names, the "
                           "phrases the person always used, topics to avoid. Kept encrypted in the persona's "
                           "bundle and shown beside the picture on the operator page during a call (filter box; "
                           "press n to hide or show); never sent to the far end. Without an option, prints them."
                           "\n\n" + STORE_HELP, formatter_class=raw)
    notes.add_argument("name", metavar="NAME", help="persona name or id")
    how = notes.add_mutually_exclusive_group()
    how.add_argument("--edit", action="store_true", help="edit them in $EDITOR (a private temp file, removed after)")
    how.add_argument("--from", dest="source", metavar="FILE", help="replace them with this UTF-8 text file")
    how.add_argument("--clear", action="store_true", help="remove them")
    notes.set_defaults(func=cmd_notes)

    delete = sub.add_parser("delete", help="delete a persona and all its data",
                            description="Remove photo, voice, consent and derived data for good. A damaged "
                            "persona can be deleted by its id (see `persona list`).\n\n" + STORE_HELP,
                            formatter_class=raw)
    delete.add_argument("name", metavar="NAME", help="persona name or id")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=cmd_delete)

    for leaf in (create, listing, show, revoke, delete, consent, notes):
        _add_home(leaf)

    audit = subparsers.add_parser("audit", help="check the audit log",
                                  description="The audit log ($EVERCALL_HOME/audit.log) records persona "
                                  "creation, revocation, deletion, invites, calls and renders, each record "
                                  "chained to the one before by SHA-256 and sealed with a key from the store "
                                  "passphrase, with a sealed head (audit.log.head), so forged, re-chained or "
                                  "removed records are found. It never holds photos or voices.",
                                  formatter_class=raw)
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = audit_sub.add_parser("verify", help="find edited, deleted or reordered audit records "
                                  "(exit code 1 if any)")
    _add_home(verify)
    verify.set_defaults(func=cmd_audit_verify)

    from calls import objection_cli

    objection_cli.register(subparsers)
