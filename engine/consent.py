"""The consent record of the next of kin, without which a persona may not exist or be used.

A persona is the likeness of a person who has died; only a recorded consent of the next of kin allows
the store to keep it and the engine to use it. The record names who consented, when, for which uses
(a live `call`, an offline `render`), until when, and the SHA-256 of the evidence document (a signed
consent form, a scanned letter) so the evidence can later be matched to the record.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import ConsentError

USES = frozenset({"call", "render"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("consented_by", "relationship", "evidence_sha256", "scope", "expires", "evidence_name",
           "recorded_at", "revoked_at", "revoked_reason", "persona")


def utc_now() -> datetime:
    """The one clock consent is judged by: aware UTC."""
    return datetime.now(timezone.utc)


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return utc_now()
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks so a large scan does not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_scope(text: str | set[str] | frozenset[str] | list[str]) -> frozenset[str]:
    """`"call,render"` or an iterable of uses -> a checked frozenset."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scope = frozenset(item.strip().lower() for item in items if item.strip())
    unknown = scope - USES
    if unknown or not scope:
        raise ConsentError(f"consent scope {','.join(sorted(unknown)) or '(empty)'} is not valid: "
                           f"use one or more of {', '.join(sorted(USES))}")
    return scope


def _text(value: Any, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConsentError(f"consent record has no {what}: give who consented and their relationship")
    value = value.strip()
    if len(value) > limit or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ConsentError(f"consent {what} is over {limit} characters or has control characters: "
                           "give a plain one-line value")
    return value


@dataclass(frozen=True)
class ConsentRecord:
    """Who allowed what, when, on which evidence; frozen so a loaded persona cannot widen its own consent."""

    consented_by: str
    relationship: str
    evidence_sha256: str
    scope: frozenset[str] = field(default_factory=lambda: USES)
    expires: date | None = None  # the first day on which the consent no longer holds (UTC)
    evidence_name: str = ""
    recorded_at: str = field(default_factory=lambda: utc_now().isoformat(timespec="seconds"))
    revoked_at: str | None = None
    revoked_reason: str | None = None
    persona: str = ""  # the persona's name, filled by the store; used in messages

    def __post_init__(self) -> None:
        object.__setattr__(self, "consented_by", _text(self.consented_by, "name of who consented"))
        object.__setattr__(self, "relationship", _text(self.relationship, "relationship to the person"))
        if not isinstance(self.evidence_sha256, str) or not _SHA256.match(self.evidence_sha256.lower()):
            raise ConsentError("consent record has no evidence: give the consent document with --evidence "
                               "(its SHA-256 is kept with the record)")
        object.__setattr__(self, "evidence_sha256", self.evidence_sha256.lower())
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if isinstance(self.expires, str):
            object.__setattr__(self, "expires", _parse_date(self.expires))
        if isinstance(self.expires, datetime):
            object.__setattr__(self, "expires", self.expires.date())

    @property
    def label(self) -> str:
        return f"persona '{self.persona}'" if self.persona else "this persona"

    def status(self, now: datetime | None = None) -> str:
        """One word or phrase for `persona show`/`list`: valid, expired on D, revoked on D."""
        moment = _utc(now)
        if self.revoked_at:
            return f"revoked on {self.revoked_at[:10]}"
        if self.expires is not None and moment.date() >= self.expires:
            return f"expired on {self.expires.isoformat()}"
        return "valid" + (f" until {self.expires.isoformat()}" if self.expires else "")

    def check(self, use: str, now: datetime | None = None) -> None:
        """Raise ConsentError unless this record allows `use` at `now`; the message names the persona."""
        if use not in USES:
            raise ValueError(f"unknown use {use!r}; expected one of {sorted(USES)}")
        moment = _utc(now)
        if self.revoked_at:
            why = f" ({self.revoked_reason})" if self.revoked_reason else ""
            raise ConsentError(f"consent for {self.label} was revoked on {self.revoked_at[:10]}{why}: it "
                               "cannot be used; delete it with `evercall persona delete`")
        if self.expires is not None and moment.date() >= self.expires:
            raise ConsentError(f"consent for {self.label} expired on {self.expires.isoformat()}: ask the next "
                               "of kin for a new consent and create the persona again")
        if use not in self.scope:
            raise ConsentError(f"consent for {self.label} does not include '{use}' (it covers "
                               f"{', '.join(sorted(self.scope))}): ask the next of kin for consent that "
                               f"includes '{use}' and create the persona again")

    def revoke(self, reason: str | None = None, now: datetime | None = None) -> "ConsentRecord":
        """A copy marked revoked; the first revocation date is kept if it is revoked again."""
        if self.revoked_at:
            return self
        reason = _text(reason, "revocation reason", 500) if reason and reason.strip() else None
        return replace(self, revoked_at=_utc(now).isoformat(timespec="seconds"), revoked_reason=reason)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scope"] = sorted(self.scope)
        data["expires"] = self.expires.isoformat() if self.expires else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConsentRecord":
        if not isinstance(data, dict) or not {"consented_by", "relationship", "evidence_sha256"} <= data.keys():
            raise ConsentError("the stored consent record is incomplete: delete the persona and create it "
                               "again with the consent evidence")
        return cls(**{key: data[key] for key in _FIELDS if key in data})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ConsentRecord":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConsentError("the stored consent record is not readable: delete the persona and create it "
                               "again with the consent evidence") from exc
        return cls.from_dict(data)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConsentError(f"consent expiry date {text!r} is not a date: write it as YYYY-MM-DD") from exc
