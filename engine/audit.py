"""An append-only, hash-chained audit log of what was done with personas (JSON lines).

Each record is `{seq, time, event, fields, prev_hash, hash}` where `hash` is the SHA-256 of the
canonical JSON of the other five keys, and `prev_hash` is the previous record's `hash` (64 zeros for
the first). `verify()` finds an edited, a deleted, a reordered or a damaged record and says which.

A hash chain alone can be recomputed by anyone who edits the file, so each record also carries `mac`, an
HMAC of its hash under a key derived from the store passphrase (engine/seal.py), and a sealed head file
(`audit.log.head`: the count of sealed records, the last one's seq and hash) is rewritten after every
append. Without the passphrase nobody can append a record that verifies, re-chain the log after deleting
a record, or cut its end off or empty it unnoticed. A writer without the passphrase (a demo call with no
store) still records, unsealed (`mac: null`), and `verify` names such records. What the seals cannot see
is the log and its head both replaced by an older copy of the pair: keep backups elsewhere for that.

The log is plain text so that its chain can be read without the store passphrase; it therefore must never
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
from typing import Any, Callable

from engine import seal

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
HEAD_SUFFIX = ".head"
KeySource = bytes | Callable[[], "bytes | None"] | None


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
    kind: str  # edited | deleted | reordered | duplicate | broken_chain | damaged | forged | unsealed | head
    message: str


@dataclass
class VerifyResult:
    records: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def trustworthy(self) -> bool:
        """Nothing sealed was removed, rewritten or forged (unsealed extras and torn lines aside): what the
        log's sealed records say can be relied on, e.g. to refuse a restored old consent."""
        return all(p.kind in ("unsealed", "damaged") for p in self.problems)


class AuditLog:
    """Append and verify `<home>/audit.log`."""

    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: Path | str, key: KeySource = None) -> None:
        """`key` seals records: bytes, a function returning them (or None), or None to take the key of the
        store the log sits in (`<home>/audit.log`) when its passphrase is in the environment or keyring."""
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + HEAD_SUFFIX)
        self._key_source = key
        with AuditLog._locks_guard:  # one lock per file, shared by every AuditLog object in the process
            self._lock = AuditLog._locks.setdefault(str(self.path.resolve()), threading.Lock())

    def key(self) -> bytes | None:
        """The sealing key, or None when it cannot be had here (no passphrase)."""
        source = self._key_source
        if source is None:
            return seal.store_key(self.path.parent, "audit")
        return source() if callable(source) else source

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Add one record chained to the last one, sealed, and fsync it; then reseal the head. Returns it."""
        check_fields(event, fields)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self.key()
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
                record["mac"] = _record_mac(key, record) if key else None
                line = (b"\n" if needs_newline else b"") + canonical(record) + b"\n"
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                if key:
                    self._write_head(key, record)
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

    def _write_head(self, key: bytes, last: dict[str, Any]) -> None:
        """Reseal the head after `last` was appended (under the file lock)."""
        from engine.vault import atomic_write

        head = self._read_head()
        count = head["count"] + 1 if isinstance(head, dict) and head.get("seq") == last["seq"] - 1 \
            and _head_ok(key, head) else self._count_sealed(key)
        body = {"count": count, "seq": last["seq"], "hash": last["hash"]}
        atomic_write(self.head_path, canonical({**body, "mac": seal.tag(key, "audit head", canonical(body))}),
                     "the audit log's head")

    def _count_sealed(self, key: bytes) -> int:
        return sum(1 for record in self.records() if record.get("mac") is not None)

    def _read_head(self) -> dict[str, Any] | None | str:
        """The head as written, None when there is none, "damaged" when it is not readable."""
        try:
            head = json.loads(self.head_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return "damaged"
        if not isinstance(head, dict) or not isinstance(head.get("count"), int) \
                or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
            return "damaged"
        return head

    def records(self) -> list[dict[str, Any]]:
        """Every well-formed record in file order (for display)."""
        if not self.path.exists():
            return []
        return [r for r in (_parse(raw) for raw in self.path.read_bytes().splitlines()) if r is not None]

    def verify(self, expect_records: bool = False) -> VerifyResult:
        """Check every hash, seal and the chain, and the sealed head; report what was edited, deleted,
        reordered, forged or cut off. `expect_records`: the store holds personas, so a log that is gone
        entirely is a problem too."""
        result = VerifyResult()
        key = self.key()
        head = self._read_head()
        if not self.path.exists():
            if head is not None or expect_records:
                result.problems.append(Problem(None, None, "head", f"the audit log {self.path} is missing, "
                                               "though the store has a history: restore it from a backup"))
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
        self._check_seals(key, head, found, result, expect_records)
        result.problems.sort(key=lambda p: (p.seq or 0, p.line or 0))
        return result

    def _check_seals(self, key: bytes | None, head: dict[str, Any] | None | str,
                     found: list[tuple[int, dict[str, Any]]], result: VerifyResult, expect_records: bool) -> None:
        """Every record sealed by this store's key, and the sealed head still present in the log."""
        if key is None:
            result.problems.append(Problem(None, None, "unsealed", "the seals cannot be checked without the "
                                           "store passphrase: set EVERCALL_PASSPHRASE"))
            return
        sealed = 0  # records carrying a seal, valid or not: removing one lowers it, forging one does not
        by_seq: dict[int, dict[str, Any]] = {}
        for number, record in found:
            seq = record["seq"]
            sealed += record.get("mac") is not None
            if record.get("mac") is None:
                result.problems.append(Problem(number, seq, "unsealed", f"line {number}: record seq {seq} is "
                                               "not sealed (written without the store passphrase, or forged)"))
            elif not seal.valid(key, "audit record", record["hash"].encode(), record["mac"]):
                result.problems.append(Problem(number, seq, "forged", f"line {number}: record seq {seq} is not "
                                               "sealed by this store's key (forged or rewritten)"))
            else:
                by_seq.setdefault(seq, record)
        if head is None:
            if sealed or expect_records:
                result.problems.append(Problem(None, None, "head", f"the sealed head {self.head_path.name} is "
                                               "missing: the log may have been replaced"))
            return
        if head == "damaged" or not _head_ok(key, head):
            result.problems.append(Problem(None, None, "head", f"the sealed head {self.head_path.name} is "
                                           "damaged or forged"))
            return
        kept = by_seq.get(head["seq"])
        deletions_named = any(p.kind == "deleted" for p in result.problems)  # a gap in seqs says it already
        if kept is None or kept["hash"] != head["hash"] or (sealed < head["count"] and not deletions_named):
            last = max(by_seq, default=0)
            result.problems.append(Problem(None, head["seq"], "head", f"the log holds {sealed} sealed records up "
                                           f"to seq {last}, but its sealed head says {head['count']} up to seq "
                                           f"{head['seq']}: records were removed from it"))


def _record_mac(key: bytes, record: dict[str, Any]) -> str:
    return seal.tag(key, "audit record", record["hash"].encode())


def _head_ok(key: bytes, head: dict[str, Any]) -> bool:
    body = {"count": head.get("count"), "seq": head.get("seq"), "hash": head.get("hash")}
    return seal.valid(key, "audit head", canonical(body), head.get("mac"))


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A record with the expected keys and types (`mac` is absent in logs from before seals), or None."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or set(record) - {"mac"} != {*_KEYS, "hash"}:
        return None
    if record.get("mac") is not None and not isinstance(record["mac"], str):
        return None
    if not isinstance(record["seq"], int) or isinstance(record["seq"], bool) or record["seq"] < 1:
        return None
    if not isinstance(record["fields"], dict) or not all(isinstance(record[k], str)
                                                         for k in ("time", "event", "prev_hash", "hash")):
        return None
    return record
