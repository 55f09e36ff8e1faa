"""The consent record of the next of kin, without which a persona may not exist or be used.

A persona is the likeness of a person who has died; only a recorded consent of the next of kin allows
the store to keep it and the engine to use it. The record names who consented, when, for which uses
(a live `call`, an offline `render`), until when, and the SHA-256 of the evidence document (a signed
consent form, a scanned letter) so the evidence can later be matched to the record.

Families are rarely of one mind, so a record also lists every next of kin the operator recorded
(`KinConsent`): each one consents or withholds with their own evidence document, and the persona is
usable only when every one of them has consented. Any one of them who consented can revoke, which ends
the consent for all. The person who gave the first consent (the record's `consented_by`) is always
the first of them, so records written before kin existed read as "one kin, consented".
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import ConsentError

USES = frozenset({"call", "render"})
KIN_STATES = ("pending", "consented", "withheld", "revoked")
MAX_KIN = 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("consented_by", "relationship", "evidence_sha256", "scope", "expires", "evidence_name",
           "recorded_at", "revoked_at", "revoked_reason", "persona", "full_name", "born", "kin")
_KIN_FIELDS = ("name", "relationship", "state", "evidence_sha256", "evidence_name", "decided_at", "reason")


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


def person_key(name: str) -> str:
    """How two spellings of one name are compared: Unicode-normalised, case and spacing ignored."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def parse_kin(text: str) -> tuple[str, str]:
    """`"Ben Miller, son"` -> ("Ben Miller", "son"); the last comma separates the relationship."""
    name, comma, relationship = (text or "").rpartition(",")
    if not comma or not name.strip() or not relationship.strip():
        raise ConsentError(f"next of kin {text!r} needs a name and a relationship: write it as "
                           "\"Full Name, relationship\" (e.g. \"Ben Miller, son\")")
    return _text(name, "next of kin's name"), _text(relationship, "next of kin's relationship")


def _check_sha(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value.lower()):
        raise ConsentError("consent record has no evidence: give the consent document with --evidence "
                           "(its SHA-256 is kept with the record)")
    return value.lower()


@dataclass(frozen=True)
class KinConsent:
    """One next of kin and where they stand: pending, consented, withheld or revoked (with their evidence)."""

    name: str
    relationship: str
    state: str = "pending"
    evidence_sha256: str | None = None
    evidence_name: str = ""
    decided_at: str | None = None  # when they consented, withheld or revoked (UTC, ISO)
    reason: str | None = None  # given with a revocation

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _text(self.name, "next of kin's name"))
        object.__setattr__(self, "relationship", _text(self.relationship, "next of kin's relationship"))
        if self.state not in KIN_STATES:
            raise ConsentError(f"the stored consent of {self.name} is in an unknown state {self.state!r}: "
                               "record their consent again")
        if self.state != "pending" or self.evidence_sha256 is not None:
            object.__setattr__(self, "evidence_sha256", _check_sha(self.evidence_sha256))

    @property
    def key(self) -> str:
        return person_key(self.name)

    @property
    def who(self) -> str:
        return f"{self.name} ({self.relationship})"

    def describe(self) -> str:
        """One line for `persona show`."""
        when = f" on {self.decided_at[:10]}" if self.decided_at else ""
        evidence = f", evidence {self.evidence_name or '?'} sha256 {self.evidence_sha256}" \
            if self.evidence_sha256 else ""
        state = {"pending": "has not answered yet", "consented": f"consented{when}",
                 "withheld": f"withheld consent{when}", "revoked": f"revoked consent{when}"}[self.state]
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.who}: {state}{reason}{evidence}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "KinConsent":
        if isinstance(data, KinConsent):
            return data
        if not isinstance(data, dict) or not {"name", "relationship"} <= data.keys():
            raise ConsentError("a stored next-of-kin entry is incomplete: delete the persona and create it "
                               "again with the consent evidence")
        return cls(**{key: data[key] for key in _KIN_FIELDS if key in data})


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
    full_name: str = ""  # the person's full name, when the persona's name is not it (matched to objections)
    born: int | None = None  # the person's birth year, when known (matched to objections)
    kin: tuple[KinConsent, ...] = ()  # every recorded next of kin; the first is `consented_by`

    def __post_init__(self) -> None:
        object.__setattr__(self, "consented_by", _text(self.consented_by, "name of who consented"))
        object.__setattr__(self, "relationship", _text(self.relationship, "relationship to the person"))
        object.__setattr__(self, "evidence_sha256", _check_sha(self.evidence_sha256))
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if isinstance(self.expires, str):
            object.__setattr__(self, "expires", _parse_date(self.expires))
        if isinstance(self.expires, datetime):
            object.__setattr__(self, "expires", self.expires.date())
        if self.full_name:
            object.__setattr__(self, "full_name", _text(self.full_name, "person's full name"))
        object.__setattr__(self, "born", check_born(self.born))
        object.__setattr__(self, "kin", self._merged_kin())

    def _merged_kin(self) -> tuple[KinConsent, ...]:
        """The kin list with the first consenter in it, consented; one entry per person."""
        first = KinConsent(self.consented_by, self.relationship, "consented", self.evidence_sha256,
                           self.evidence_name, self.recorded_at)
        kin: list[KinConsent] = []
        for entry in (KinConsent.from_dict(item) for item in (self.kin or ())):
            if any(other.key == entry.key for other in kin):
                raise ConsentError(f"next of kin {entry.name} is recorded twice: record each person once")
            kin.append(entry)
        at = next((i for i, entry in enumerate(kin) if entry.key == first.key), None)
        if at is None:
            kin.insert(0, first)
        elif kin[at].state == "pending":
            kin[at] = replace(first, relationship=kin[at].relationship)
        elif kin[at].evidence_sha256 == first.evidence_sha256 and not kin[at].evidence_name:
            kin[at] = replace(kin[at], evidence_name=first.evidence_name)  # named once the store knows it
        if len(kin) > MAX_KIN:
            raise ConsentError(f"{len(kin)} next of kin recorded; the record takes at most {MAX_KIN}")
        return tuple(kin)

    @property
    def names(self) -> tuple[str, ...]:
        """The names the person is known by here (persona name, full name): what objections are matched to."""
        return tuple(name for name in (self.persona, self.full_name) if name)

    def missing(self) -> list[KinConsent]:
        """The next of kin whose consent is still missing (not answered, or withheld)."""
        return [entry for entry in self.kin if entry.state in ("pending", "withheld")]

    @property
    def label(self) -> str:
        return f"persona '{self.persona}'" if self.persona else "this persona"

    def status(self, now: datetime | None = None) -> str:
        """One phrase for `persona show`/`list`: valid, expired on D, revoked on D, waiting for ..."""
        moment = _utc(now)
        if self.revoked_at:
            return f"revoked on {self.revoked_at[:10]}"
        if self.expires is not None and moment.date() >= self.expires:
            return f"expired on {self.expires.isoformat()}"
        withheld = [entry.who for entry in self.kin if entry.state == "withheld"]
        if withheld:
            return f"consent withheld by {', '.join(withheld)}"
        pending = [entry.who for entry in self.kin if entry.state == "pending"]
        if pending:
            return f"waiting for the consent of {', '.join(pending)}"
        return "valid" + (f" until {self.expires.isoformat()}" if self.expires else "")

    def check_active(self, now: datetime | None = None) -> None:
        """Raise ConsentError if the record is revoked or expired (kin may still be missing)."""
        moment = _utc(now)
        if self.revoked_at:
            why = f" ({self.revoked_reason})" if self.revoked_reason else ""
            raise ConsentError(f"consent for {self.label} was revoked on {self.revoked_at[:10]}{why}: it "
                               "cannot be used; delete it with `evercall persona delete`")
        if self.expires is not None and moment.date() >= self.expires:
            raise ConsentError(f"consent for {self.label} expired on {self.expires.isoformat()}: ask the next "
                               "of kin for a new consent and create the persona again")

    def check(self, use: str, now: datetime | None = None) -> None:
        """Raise ConsentError unless this record allows `use` at `now`; the message names the persona."""
        if use not in USES:
            raise ValueError(f"unknown use {use!r}; expected one of {sorted(USES)}")
        self.check_active(now)
        withheld = [entry for entry in self.kin if entry.state == "withheld"]
        if withheld:
            raise ConsentError(f"{self.label} cannot be used: {', '.join(e.who for e in withheld)} withheld "
                               "consent; it can be used only when every recorded next of kin consents")
        pending = [entry for entry in self.kin if entry.state == "pending"]
        if pending:
            names = ", ".join(entry.who for entry in pending)
            raise ConsentError(f"{self.label} still needs the consent of {names}: record it with `evercall "
                               "persona consent NAME --by \"Full Name\" --evidence FILE`")
        if use not in self.scope:
            raise ConsentError(f"consent for {self.label} does not include '{use}' (it covers "
                               f"{', '.join(sorted(self.scope))}): ask the next of kin for consent that "
                               f"includes '{use}' and create the persona again")

    def revoke(self, reason: str | None = None, now: datetime | None = None,
               by: str | None = None) -> "ConsentRecord":
        """A copy marked revoked; the first revocation date is kept if it is revoked again.

        With `by`, one of the next of kin who consented takes it back: their entry is marked revoked too,
        and the whole record is revoked, because consent needs every one of them.
        """
        reason = _text(reason, "revocation reason", 500) if reason and reason.strip() else None
        moment = _utc(now).isoformat(timespec="seconds")
        record = self
        if by is not None:
            at, entry = self._kin_entry(by)
            if entry.state in ("pending", "withheld"):
                raise ConsentError(f"{entry.who} has not consented to {self.label}, so there is nothing of theirs "
                                   "to revoke: record their refusal with `evercall persona consent NAME --by "
                                   f"\"{entry.name}\" --evidence FILE --withhold`")
            if entry.state == "consented":
                kin = list(self.kin)
                kin[at] = replace(entry, state="revoked", decided_at=moment, reason=reason)
                record = replace(self, kin=tuple(kin))
        if record.revoked_at:
            return record
        return replace(record, revoked_at=moment, revoked_reason=reason)

    def _kin_entry(self, by: str) -> tuple[int, KinConsent]:
        key = person_key(_text(by, "next of kin's name"))
        for at, entry in enumerate(self.kin):
            if entry.key == key:
                return at, entry
        recorded = ", ".join(entry.who for entry in self.kin)
        raise ConsentError(f"{by.strip()} is not a recorded next of kin of {self.label} (recorded: {recorded}): "
                           "give the name as recorded, see `evercall persona show`")

    def decide(self, by: str, evidence_sha256: str, evidence_name: str = "", withhold: bool = False,
               now: datetime | None = None) -> "ConsentRecord":
        """A copy in which next of kin `by` consents (or withholds) on their own evidence document."""
        at, entry = self._kin_entry(by)
        if self.revoked_at:
            raise ConsentError(f"consent for {self.label} was revoked on {self.revoked_at[:10]}: it cannot be "
                               "given again; delete the persona and create it again with everyone's consent")
        if entry.state == "revoked":
            raise ConsentError(f"{entry.who} revoked consent to {self.label} on {(entry.decided_at or '')[:10]}")
        state = "withheld" if withhold else "consented"
        if entry.state == "consented" and withhold:
            raise ConsentError(f"{entry.who} already consented to {self.label}: to take it back, use `evercall "
                               f"persona revoke NAME --by \"{entry.name}\"`")
        evidence_sha256 = _check_sha(evidence_sha256)
        if entry.state == state and entry.evidence_sha256 == evidence_sha256:
            return self
        kin = list(self.kin)
        kin[at] = replace(entry, state=state, evidence_sha256=evidence_sha256,
                          evidence_name=evidence_name or entry.evidence_name,
                          decided_at=_utc(now).isoformat(timespec="seconds"))
        return replace(self, kin=tuple(kin))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scope"] = sorted(self.scope)
        data["expires"] = self.expires.isoformat() if self.expires else None
        data["kin"] = [entry.to_dict() for entry in self.kin]
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


def check_born(value: Any) -> int | None:
    """A birth year as a plain four-digit year (or None when not given)."""
    if value is None or value == "":
        return None
    try:
        year = int(value)
    except (TypeError, ValueError):
        year = 0
    if isinstance(value, bool) or not 1800 <= year <= utc_now().year:
        raise ConsentError(f"birth year {value!r} is not a year: give four digits, e.g. --born 1931")
    return year


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConsentError(f"consent expiry date {text!r} is not a date: write it as YYYY-MM-DD") from exc
