"""The objection register: a family member's standing refusal of any likeness of a person.

An objection names a person (full name, optionally the birth year) and is filed by a relative with an
evidence document, whose SHA-256 is kept. While it stands, no persona of that person can be created,
called or rendered, whoever consented: the refusal message gives the objection's date, never who filed
it. Only the person who filed it can withdraw it, which they prove with the same document.

The register is one encrypted file (`<home>/objections/register.enc`, AES-GCM like the personas). Every
change is also written to the sealed audit log through the same ledger that binds consent to it
(engine/ledger.py: subject `register=objections`, the digest of the register's new content), with a keyed
digest of the person's name (HMAC under a subkey of the store key), so the plain-text log never names
anyone yet still says whom each objection covers. If a standing objection that the log's sealed records
name is missing from the register on disk, an older copy of the register was restored: every person those
objections cover stays refused until the latest register is restored, or the objection is filed again with
the same evidence. A log that was cut or rewritten is not trusted at all (the ledger refuses everything).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.audit import AuditLog
from engine.consent import check_born, parse_kin, person_key, sha256_file, utc_now
from engine.errors import ConsentError
from engine.home import default_home
from engine.ledger import Ledger
from engine.vault import CONFIG_NAME, VaultError, VaultOpener, exclusive

FOLDER = "objections"
REGISTER = "register.enc"
_SLOT = "objections/register"
FORMAT = 1
ADDED, WITHDRAWN = "objection_added", "objection_withdrawn"
SUBJECT = ("register", "objections")  # how the ledger names the register in the audit log



@dataclass(frozen=True)
class Objection:
    """One filed objection; `withdrawn_at` is set when the person who filed it takes it back."""

    id: str
    person: str
    born: int | None
    filed_by: str  # "Name, relationship" as given; never shown in refusals
    evidence_sha256: str
    evidence_name: str
    filed_at: str
    withdrawn_at: str | None = None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None

    def matches(self, names: Iterable[str], born: int | None) -> bool:
        """Same name (case and spacing ignored) and, when both years are known, the same birth year."""
        if not self.active or person_key(self.person) not in {person_key(n) for n in names if n}:
            return False
        return self.born is None or born is None or self.born == born

    def describe(self) -> str:
        """One line for `objection list`: no objector's name."""
        born = f" (born {self.born})" if self.born else ""
        state = f"withdrawn on {self.withdrawn_at[:10]}" if self.withdrawn_at else "standing"
        return f"{self.id}  {self.person}{born}  filed {self.filed_at[:10]}  {state}"


@dataclass
class RegisterState:
    """The register as read, and what the audit log says it should hold."""

    version: int = 0
    objections: list[Objection] = field(default_factory=list)
    log_version: int = 0
    missing: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> log fields of standing objections
    # that the register lacks (an older copy was restored); "time" holds the date they were filed


def _person(text: Any) -> str:
    if not isinstance(text, str) or not text.strip() or len(text.strip()) > 200 \
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ConsentError("an objection needs the person's full name on one line (--person \"Full Name\")")
    return " ".join(text.split())


class ObjectionRegister:
    """File, withdraw, list and check objections under `<home>/objections/`."""

    def __init__(self, home: Path | str | None = None, unlock: VaultOpener | None = None,
                 audit: AuditLog | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.folder = self.home / FOLDER
        self._unlock = unlock or VaultOpener(self.home)
        self.audit = audit or AuditLog(self.home / "audit.log", key=self._unlock.audit_key)

    # -- plumbing -------------------------------------------------------------------------------------

    def _mac(self, name: str) -> str:
        """A digest of the person's name that only the holder of the passphrase can compute or test."""
        key = self._unlock().subkey("objections")
        return hmac.new(key, person_key(name).encode("utf-8"), hashlib.sha256).hexdigest()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, so two filings cannot take the same version."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive(self.folder / ".lock"):
            yield

    def _log(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """(highest version, standing objections by id) as the audit log's sealed records say."""
        version, standing = 0, {}
        for record in Ledger(self.audit).sealed_records(*SUBJECT):  # RollbackError if the log was altered
            event, fields = record["event"], record["fields"]
            if event not in (ADDED, WITHDRAWN) or not isinstance(fields.get("objection"), str):
                continue
            if isinstance(fields.get("version"), int):
                version = max(version, fields["version"])
            if event == ADDED:
                standing[fields["objection"]] = {**fields, "time": record["time"]}
            else:
                standing.pop(fields["objection"], None)
        return version, standing

    def _nothing_filed(self) -> bool:
        """No store, or no register and no objection in the log: nothing to check, no passphrase needed."""
        if not (self.home / CONFIG_NAME).is_file():
            return True
        return not (self.folder / REGISTER).exists() and not any(
            record["event"] in (ADDED, WITHDRAWN) for record in self.audit.records())

    def state(self) -> RegisterState:
        """Read the register (if any) and compare it with the audit log."""
        if self._nothing_filed():
            return RegisterState()
        log_version, standing = self._log()
        path = self.folder / REGISTER
        state = RegisterState(log_version=log_version)
        if path.exists():
            try:
                data = json.loads(self._unlock().unseal(_SLOT, path.read_bytes(), f"the objection register {path}"))
                state.version = int(data["version"])
                state.objections = [Objection(**item) for item in data["objections"]]
            except VaultError as exc:
                raise ConsentError(f"{exc}; until then no persona can be created or used") from exc
            except (ValueError, KeyError, TypeError) as exc:
                raise ConsentError(f"the objection register {path} is not readable ({exc}): restore it from a "
                                   "backup; until then no persona can be created or used") from exc
        present = {item.id for item in state.objections}
        state.missing = {oid: fields for oid, fields in standing.items() if oid not in present}
        return state

    def _save(self, state: RegisterState, objections: list[Objection], event: str, **fields: Any) -> None:
        """Write the register, then bind its new content to the sealed audit log."""
        version = max(state.version, state.log_version) + 1
        body = {"format": FORMAT, "version": version, "objections": [asdict(item) for item in objections]}
        self._unlock(True).write(self.folder / REGISTER, _SLOT, json.dumps(body, sort_keys=True).encode("utf-8"))
        Ledger(self.audit).record(event, *SUBJECT, body, version=version, **fields)

    # -- use ------------------------------------------------------------------------------------------

    def list(self) -> list[Objection]:
        return sorted(self.state().objections, key=lambda item: item.filed_at)

    def check(self, names: Iterable[str], born: int | None, label: str) -> None:
        """Raise ConsentError if a standing objection covers a person of these names (and birth year)."""
        names = [n for n in names if n]
        state = self.state()
        for item in state.objections:
            if item.matches(names, born):
                raise ConsentError(f"{label} cannot be created or used: a family member filed an objection to "
                                   f"any likeness of {item.person} on {item.filed_at[:10]}; only they can "
                                   "withdraw it (`evercall objection withdraw`)")
        if not state.missing:
            return
        macs = {self._mac(name) for name in names}
        for fields in state.missing.values():
            if fields.get("person_mac") in macs:
                raise ConsentError(f"{label} cannot be created or used: the audit log records an objection to "
                                   f"this person filed on {fields['time'][:10]}, which the objection register "
                                   f"{self.folder / REGISTER} no longer holds (an older copy was restored): "
                                   "restore its latest copy")

    def add(self, person: str, born: int | str | None, by: str, evidence: str | Path,
            now: datetime | None = None) -> Objection:
        """File an objection (idempotent for the same person, year and evidence); returns it."""
        person = _person(person)
        born = check_born(born)
        filer_name, relationship = parse_kin(by)
        evidence = Path(evidence)
        if not evidence.is_file() or evidence.stat().st_size == 0:
            raise ConsentError(f"objection evidence {evidence} is missing or empty: give the signed objection "
                               "document")
        sha = sha256_file(evidence)
        self._unlock(True)  # the first objection may come before the first persona: set the store up
        with self._locked():
            state = self.state()
            for item in state.objections:
                if item.active and item.evidence_sha256 == sha and item.matches([person], born) \
                        and item.born == born:
                    return item
            mac = self._mac(person)
            # Filed again after the register was rolled back: it takes back its old id and date.
            again = next(((oid, f) for oid, f in state.missing.items()
                          if f.get("person_mac") == mac and f.get("evidence_sha256") == sha), None)
            moment = (now or utc_now()).isoformat(timespec="seconds")
            item = Objection(id=again[0] if again else secrets.token_hex(6), person=person, born=born,
                             filed_by=f"{filer_name}, {relationship}", evidence_sha256=sha,
                             evidence_name=evidence.name, filed_at=again[1]["time"] if again else moment)
            self._save(state, [*state.objections, item], ADDED, objection=item.id, person_mac=mac,
                       evidence_sha256=sha)
        return item

    def withdraw(self, evidence: str | Path, person: str | None = None, objection_id: str | None = None,
                 now: datetime | None = None) -> Objection:
        """Withdraw the standing objection filed with this very evidence document; returns it."""
        evidence = Path(evidence)
        if not evidence.is_file():
            raise ConsentError(f"objection evidence {evidence} not found: give the document the objection was "
                               "filed with")
        sha = sha256_file(evidence)
        with self._locked():
            state = self.state()
            chosen = [item for item in state.objections if item.active
                      and (person is None or item.matches([person], None))
                      and (objection_id is None or item.id == objection_id.strip())]
            same = [item for item in chosen if item.evidence_sha256 == sha]
            if not same:
                if chosen:
                    raise ConsentError("this document is not the one the objection was filed with (SHA-256 "
                                       "differs): only the person who filed an objection can withdraw it, with "
                                       "the same document")
                raise ConsentError("no standing objection matches: see `evercall objection list`")
            if len(same) > 1:
                raise ConsentError(f"{len(same)} objections were filed with this document: name one with --id "
                                   "(see `evercall objection list`)")
            item = same[0]
            done = replace(item, withdrawn_at=(now or utc_now()).isoformat(timespec="seconds"))
            self._save(state, [done if o.id == item.id else o for o in state.objections], WITHDRAWN,
                       objection=item.id)
        return done
