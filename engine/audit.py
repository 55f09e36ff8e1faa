"""An append-only, hash-chained audit log of what was done with personas (JSON lines).

Each record is `{seq, time, event, fields, prev_hash, hash}` where `hash` is the SHA-256 of the
canonical JSON of the other five keys, and `prev_hash` is the previous record's `hash` (64 zeros for
the first). `verify()` finds an edited, a deleted, a reordered or a damaged record and says which.

The log is plain text so that it can be checked without the store passphrase; it therefore must never
hold biometric data: `append` accepts only short scalar fields and refuses names such as `photo`.
Appends are serialised by a thread lock and an `fcntl` lock on the file, so threads and processes
(a call server and the CLI) can write at once without breaking the chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
EVENTS = frozenset({"persona_created", "consent_revoked", "persona_deleted", "invite_created",
                    "call_started", "call_ended", "render", "kin_consent", "notes_changed",
                    "objection_added", "objection_withdrawn"})
REQUIRED = {"persona_created": {"persona"}, "consent_revoked": {"persona"}, "persona_deleted": {"persona"},
            "call_started": {"persona"}, "call_ended": {"persona", "duration_s", "far_end"},
            "render": {"persona"}, "kin_consent": {"persona", "state"}, "notes_changed": {"persona"},
            "objection_added": {"objection", "person_mac", "version"},
            "objection_withdrawn": {"objection", "version"}}
# Field names that would mean someone is about to log a likeness; refused outright.
FORBIDDEN = frozenset({"photo", "image", "frame", "voice", "audio", "samples", "embedding", "landmarks",
                       "face", "features", "profile", "descriptor"})
MAX_TEXT = 300
MAX_LIST = 32
_KEYS = ("seq", "time", "event", "fields", "prev_hash")


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({key: record[key] for key in _KEYS})).hexdigest()


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST:
            raise ValueError(f"audit field {key!r} has {len(value)} items; the log takes at most {MAX_LIST}")
        for item in value:
            if isinstance(item, (list, tuple, dict)):
                raise ValueError(f"audit field {key!r} is nested; the log takes flat values only")
            _check_value(key, item)
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"audit field {key!r} is not a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"audit field {key!r} is over {MAX_TEXT} characters; the log takes short text")
        return
    raise ValueError(f"audit field {key!r} is {type(value).__name__}; the log takes text, numbers and short "
                     "lists only (never media or embeddings)")


def check_fields(event: str, fields: dict[str, Any]) -> None:
    """Refuse unknown events, missing required fields and anything that could carry a likeness."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; expected one of {sorted(EVENTS)}")
    missing = REQUIRED.get(event, set()) - fields.keys()
    if missing:
        raise ValueError(f"audit event {event!r} needs field(s) {sorted(missing)}")
    for key, value in fields.items():
        if key.lower() in FORBIDDEN:
            raise ValueError(f"audit field {key!r} would hold biometric data; log an id instead")
        _check_value(key, value)


@dataclass(frozen=True)
class Problem:
    """One finding of `verify`: where (1-based line, seq if known), what kind, and a readable line."""

    line: int | None
    seq: int | None
    kind: str  # edited | deleted | reordered | duplicate | broken_chain | damaged
    message: str


@dataclass
class VerifyResult:
    records: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """Append and verify `<home>/audit.log`."""

    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with AuditLog._locks_guard:  # one lock per file, shared by every AuditLog object in the process
            self._lock = AuditLog._locks.setdefault(str(self.path.resolve()), threading.Lock())

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Add one record chained to the last one and fsync it; returns the record."""
        check_fields(event, fields)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                last, needs_newline = self._tail(fd)
                record: dict[str, Any] = {
                    "seq": last["seq"] + 1 if last else 1,
                    "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "event": event, "fields": fields,
                    "prev_hash": last["hash"] if last else GENESIS}
                record["hash"] = record_hash(record)
                line = (b"\n" if needs_newline else b"") + canonical(record) + b"\n"
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)  # also releases the flock
        return record

    @staticmethod
    def _tail(fd: int) -> tuple[dict[str, Any] | None, bool]:
        """The last well-formed record and whether the file lacks a final newline (a torn write)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return None, False
        chunk, block = b"", 4096
        pos = size
        while pos > 0:  # read backwards until two newlines are seen, or the start
            step = min(block, pos)
            pos -= step
            chunk = os.pread(fd, step, pos) + chunk
            if chunk.count(b"\n") >= 2:
                break
        needs_newline = not chunk.endswith(b"\n")
        for raw in reversed(chunk.splitlines()):
            record = _parse(raw)
            if record is not None:
                return record, needs_newline
        # The tail is damaged: fall back to scanning the whole file for the last good record.
        data = os.pread(fd, size, 0)
        for raw in reversed(data.splitlines()):
            record = _parse(raw)
            if record is not None:
                return record, needs_newline
        return None, needs_newline

    def records(self) -> list[dict[str, Any]]:
        """Every well-formed record in file order (for display)."""
        if not self.path.exists():
            return []
        return [r for r in (_parse(raw) for raw in self.path.read_bytes().splitlines()) if r is not None]

    def verify(self) -> VerifyResult:
        """Check every hash and the chain; report which records were edited, deleted or reordered."""
        result = VerifyResult()
        if not self.path.exists():
            return result
        found: list[tuple[int, dict[str, Any]]] = []
        for number, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            if not raw.strip():
                continue
            record = _parse(raw)
            if record is None:
                result.problems.append(Problem(number, None, "damaged", f"line {number} is not a valid audit "
                                               "record (damaged or cut short)"))
                continue
            found.append((number, record))
        result.records = len(found)
        by_seq: dict[int, tuple[int, dict[str, Any]]] = {}
        highest = 0
        for number, record in found:
            seq = record["seq"]
            if record_hash(record) != record["hash"]:
                result.problems.append(Problem(number, seq, "edited", f"line {number}: record seq {seq} was "
                                               "edited (its content no longer matches its hash)"))
            if seq in by_seq:
                result.problems.append(Problem(number, seq, "duplicate", f"line {number}: record seq {seq} "
                                               f"appears again (first at line {by_seq[seq][0]})"))
                continue
            if seq < highest:
                result.problems.append(Problem(number, seq, "reordered", f"line {number}: record seq {seq} "
                                               f"comes after seq {highest} (records were reordered)"))
            highest = max(highest, seq)
            by_seq[seq] = (number, record)
        for seq in range(1, highest + 1):
            if seq not in by_seq:
                after = next((by_seq[s][0] for s in range(seq + 1, highest + 1) if s in by_seq), None)
                result.problems.append(Problem(after, seq, "deleted", f"record seq {seq} is missing (deleted)"
                                               + (f", before line {after}" if after else "")))
        for seq, (number, record) in sorted(by_seq.items()):
            expected = GENESIS if seq == 1 else by_seq.get(seq - 1, (0, {"hash": None}))[1]["hash"]
            if expected is not None and record["prev_hash"] != expected:
                result.problems.append(Problem(number, seq, "broken_chain", f"line {number}: record seq {seq} "
                                               f"does not chain to seq {seq - 1} (a record before it was "
                                               "replaced or rewritten)"))
        result.problems.sort(key=lambda p: (p.seq or 0, p.line or 0))
        return result


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A record with the expected keys and types, or None."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or set(record) != {*_KEYS, "hash"}:
        return None
    if not isinstance(record["seq"], int) or isinstance(record["seq"], bool) or record["seq"] < 1:
        return None
    if not isinstance(record["fields"], dict) or not all(isinstance(record[k], str)
                                                         for k in ("time", "event", "prev_hash", "hash")):
        return None
    return record
