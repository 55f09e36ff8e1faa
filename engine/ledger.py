"""State that may only move forward, bound to the sealed audit log so an older copy of its file is refused.

A persona's consent (revoked stays revoked, an expiry is not lifted by restoring a file) lives in an
encrypted file that anyone can replace with an older copy of itself, no passphrase needed. So every
change of such state is also written to the audit log, whose records and head are sealed with a key from
the passphrase (engine/audit.py): the record carries `state_sha256`, the SHA-256 of the state's canonical
JSON, under a subject (e.g. `persona=<id>`). Loading the state later compares its digest with the latest
sealed record for that subject; a restored older file has an older digest and is refused with a message
that names the change it would undo.

    ledger = Ledger(store.audit)
    ledger.record("consent_revoked", "persona", bundle_id, state, reason=...)   # after writing the file
    ledger.check("persona", bundle_id, state, what="consent of persona 'Rose'")  # on every load

A subject with no sealed record yet (state from before this check existed) passes. Records that are not
sealed count for nothing here: anyone could have written them. If the log itself was cut or rewritten,
nothing it says can be relied on and `check` refuses everything until `evercall audit verify` is clean.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from engine import seal
from engine.audit import AuditLog, canonical
from engine.errors import ConsentError

STATE_FIELD = "state_sha256"


class RollbackError(ConsentError):
    """The state on disk is older than what the sealed audit log says it became."""


def state_digest(state: Any) -> str:
    """SHA-256 of the state's canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(canonical({"state": state})).hexdigest()


class Ledger:
    """Record and check the digest of forward-only state in a sealed audit log."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(self, event: str, subject_field: str, subject: str, state: Any, **fields: Any) -> dict[str, Any]:
        """Append `event` naming the subject and the digest of its new state; returns the record."""
        return self.log.append(event, **{subject_field: subject, STATE_FIELD: state_digest(state)}, **fields)

    def sealed_records(self, subject_field: str, subject: str) -> list[dict[str, Any]]:
        """The subject's records that this store's key sealed, oldest first; RollbackError if the log was
        cut, rewritten or forged (then none of it can be trusted)."""
        result = self.log.verify()
        if not result.trustworthy:
            first = next(p for p in result.problems if p.kind not in ("unsealed", "damaged"))
            raise RollbackError(f"the audit log {self.log.path} was altered ({first.message}): consent cannot be "
                                "confirmed; run `evercall audit verify` and restore the log from a backup")
        key = self.log.key()
        return [record for record in self.log.records()
                if record["fields"].get(subject_field) == subject and key is not None
                and seal.valid(key, "audit record", record["hash"].encode(), record.get("mac"))]

    def check(self, subject_field: str, subject: str, state: Any, what: str,
              explain: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        """Raise RollbackError unless `state` is what the latest sealed record for the subject says.

        `explain(record)` may word the refusal for the record whose change the old file would undo."""
        records = [r for r in self.sealed_records(subject_field, subject) if STATE_FIELD in r["fields"]]
        if not records or records[-1]["fields"][STATE_FIELD] == state_digest(state):
            return
        latest = records[-1]
        message = explain(latest) if explain else None
        raise RollbackError(message or f"the {what} does not match the audit log, which last recorded a change "
                            f"in record #{latest['seq']} ({latest['event']}, {latest['time'][:10]}): an older "
                            "copy of its file was restored; restore the latest one")
