"""The persona store: consented personas kept encrypted under `<home>/personas/<id>/`.

A persona is created only with a consent record and its evidence; photo, voice, consent and derived
blobs (landmarks, voice profile, ... computed by the caller's `derive` hook) are all encrypted. Each
bundle has an encrypted manifest naming the persona, holding the consent record and listing every file
with the SHA-256 of its bytes on disk, so a missing, truncated, replaced or tampered file is reported
on load. Folder names are random ids, so the disk does not even reveal who is stored.

A bundle is assembled in a hidden staging folder and renamed into place when complete; the manifest is
the only file that changes later (revocation) and it is replaced atomically. Plaintext lives in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.audit import AuditLog
from engine.home import default_home
from engine.consent import ConsentRecord, sha256_file, utc_now
from engine.errors import ConsentError, PersonaError
from engine.ledger import Ledger, RollbackError, state_digest
from engine.objections import ObjectionRegister
from engine.persona import VOICE_RATE, Persona, choose_face, keep_voice, read_photo, read_voice
from engine.vault import VaultError, VaultOpener, exclusive, fsync_dir

MANIFEST = "manifest.enc"
FORMAT = 1
MAX_NAME = 64
_DERIVED_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_STAGING = ".incomplete-"
MAX_NOTES = 64_000  # characters of operator notes: a few pages, never a document store
_DELETING = ".deleting-"

Derive = Callable[[Persona], dict[str, bytes]]
_CHANGED = {"consent_revoked": "revoked", "persona_created": "recorded"}


def consent_state(consent: ConsentRecord) -> dict[str, Any]:
    """The part of a consent that may only move forward and is bound to the audit log: revocation, expiry."""
    return {"revoked_at": consent.revoked_at, "expires": consent.expires.isoformat() if consent.expires else None}


def check_name(name: str) -> str:
    """A display name: one line, no path parts, no control or invisible formatting characters."""
    if not isinstance(name, str):
        raise PersonaError("persona name must be text: give a name such as \"Grandma Rose\"")
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise PersonaError("persona name is empty: give a name such as \"Grandma Rose\"")
    if len(name) > MAX_NAME:
        raise PersonaError(f"persona name is over {MAX_NAME} characters: give a shorter name")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise PersonaError(f"persona name {name!r} looks like a path: give a plain name without /, \\ or a "
                           "leading dot")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise PersonaError("persona name has control or invisible characters: type the name plainly")
    return name


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PersonaStore:
    """Create, list, show, revoke, delete and load consented personas; all at-rest data is encrypted."""

    def __init__(self, home: Path | str | None = None, passphrase: str | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.personas = self.home / "personas"
        self._unlock = VaultOpener(self.home, passphrase)
        self.audit = AuditLog(self.home / "audit.log", key=self._unlock.audit_key)
        self.objections = ObjectionRegister(self.home, self._unlock, self.audit)

    # -- plumbing -------------------------------------------------------------------------------------

    def _check_rollback(self, bundle: Path, manifest: dict[str, Any], consent: ConsentRecord) -> None:
        """Refuse a manifest older than the sealed audit log says its consent became (engine/ledger.py)."""
        name = manifest["name"]

        def restored(record: dict[str, Any]) -> str:
            return (f"consent for persona '{name}' was {_CHANGED.get(record['event'], 'changed')} on "
                    f"{record['time'][:10]} (audit record #{record['seq']}), but its manifest says otherwise: an "
                    f"older copy of {MANIFEST} was restored, so it cannot be used; delete it with `evercall "
                    "persona delete`")

        ledger = Ledger(self.audit)
        revoked = [r for r in ledger.sealed_records("persona", bundle.name) if r["event"] == "consent_revoked"]
        if revoked and not consent.revoked_at:
            raise RollbackError(restored(revoked[-1]))
        ledger.check("persona", bundle.name, consent_state(consent), f"consent of persona '{name}'", restored)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes, so two creates cannot take the same name."""
        self.personas.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive(self.home / ".store.lock"):
            self._sweep()
            yield

    def _sweep(self) -> None:
        """Remove what a crashed create or delete left behind (only ciphertext, but unwanted)."""
        for entry in self.personas.iterdir():
            if entry.is_dir() and entry.name.startswith((_STAGING, _DELETING)):
                shutil.rmtree(entry, ignore_errors=True)

    def _bundles(self) -> list[Path]:
        if not self.personas.is_dir():
            return []
        return sorted(p for p in self.personas.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _manifest(self, bundle: Path) -> dict[str, Any]:
        vault = self._unlock()
        where = f"persona bundle {bundle}"
        try:
            blob = (bundle / MANIFEST).read_bytes()
        except FileNotFoundError as exc:
            raise PersonaError(f"{where} has no manifest (it is incomplete): delete it with `evercall persona "
                               f"delete {bundle.name}` and create the persona again") from exc
        try:
            data = json.loads(vault.unseal(f"personas/{bundle.name}/manifest", blob, f"the manifest of {where}"))
        except VaultError as exc:
            raise PersonaError(str(exc)) from exc
        if data.get("format") != FORMAT or data.get("id") != bundle.name:
            raise PersonaError(f"the manifest of {where} does not belong to it: restore the bundle from a "
                               "backup or delete it")
        return data

    def _consent(self, manifest: dict[str, Any]) -> ConsentRecord:
        return ConsentRecord.from_dict(manifest["consent"])

    def _find(self, name: str) -> tuple[Path, dict[str, Any]]:
        """Look up by name (case-insensitive) or by id."""
        key = unicodedata.normalize("NFC", name.strip()).casefold()
        for bundle in self._bundles():
            if bundle.name == name.strip():
                return bundle, self._manifest(bundle)
        self._unlock()
        unreadable: list[str] = []
        for bundle in self._bundles():
            try:
                manifest = self._manifest(bundle)
            except PersonaError as exc:
                unreadable.append(f"{bundle.name}: {exc}")
                continue
            if manifest["name"].casefold() == key:
                return bundle, manifest
        if unreadable:  # the persona may well be there, behind a damaged manifest: say so, not "no persona"
            raise PersonaError(f"no readable persona named {name!r}, and {len(unreadable)} persona bundle(s) in "
                               f"{self.personas} cannot be read ({unreadable[0]})"[:600])
        raise PersonaError(f"no persona named {name!r} in {self.personas}: see `evercall persona list`")

    def _write_manifest(self, bundle: Path, manifest: dict[str, Any], bundle_id: str) -> None:
        self._unlock().write(bundle / MANIFEST, f"personas/{bundle_id}/manifest",
                             json.dumps(manifest, sort_keys=True).encode("utf-8"))

    # -- create ---------------------------------------------------------------------------------------

    def create(self, name: str, photo_path: str | Path, voice_path: str | Path, consent: ConsentRecord | None,
               evidence_path: str | Path | None, derive: Derive | None = None, face: int | None = None,
               notify: Callable[[str], None] | None = None) -> str:
        """Store a new persona with its consent; returns its id. Nothing is kept if any step fails."""
        name = check_name(name)
        if not isinstance(consent, ConsentRecord):
            raise ConsentError(f"no consent record for persona '{name}': a persona can only be created with "
                               "the recorded consent of the next of kin")
        if evidence_path is None:
            raise ConsentError(f"no consent evidence for persona '{name}': give the signed consent document "
                               "with --evidence")
        evidence_path = Path(evidence_path)
        if not evidence_path.is_file() or evidence_path.stat().st_size == 0:
            raise ConsentError(f"consent evidence {evidence_path} is missing or empty: give the signed consent "
                               "document")
        evidence_sha = sha256_file(evidence_path)
        if consent.evidence_sha256 != evidence_sha:
            raise ConsentError(f"consent evidence {evidence_path} does not match the consent record (SHA-256 "
                               "differs): give the document the consent was recorded with")
        consent = ConsentRecord.from_dict({**consent.to_dict(), "persona": name,
                                           "evidence_name": consent.evidence_name or evidence_path.name})
        consent.check_active()  # refuse consent that is already revoked or expired (kin may still answer)
        self.objections.check(consent.names, consent.born, f"persona '{name}'")
        choice = choose_face(read_photo(photo_path), face, f"persona photo {photo_path}")
        photo = choice.photo  # a group photo is cropped to one face: the largest, or --face N
        if choice.note and notify is not None:
            notify(choice.note)
        voice, note = keep_voice(read_voice(voice_path), str(voice_path))
        voice = np.ascontiguousarray(voice, dtype="<f4")
        if note and notify is not None:
            notify(note)
        derived = self._derive(derive, Persona(name=name, photo=photo, voice=voice, consent=consent))
        ok, png = cv2.imencode(".png", photo)  # lossless, and drops EXIF such as GPS position
        if not ok:
            raise PersonaError(f"cannot encode persona photo {photo_path}: give a JPEG or PNG photo")
        vault = self._unlock(create=True)  # a wrong passphrase stops here, before anything is written
        with self._locked():
            self.objections.check(consent.names, consent.born, f"persona '{name}'")  # filed meanwhile?
            for bundle in self._bundles():
                if self._manifest(bundle)["name"].casefold() == name.casefold():
                    raise PersonaError(f"a persona named '{name}' already exists: pick another name, or delete "
                                       "the old one first")
            bundle_id = secrets.token_hex(8)
            staging = self.personas / f"{_STAGING}{bundle_id}"
            final = self.personas / bundle_id
            try:
                staging.mkdir(mode=0o700)
                files: dict[str, dict[str, Any]] = {}
                blobs = {"photo": png.tobytes(), "voice": voice.tobytes()}
                blobs.update({f"derived/{key}": value for key, value in derived.items()})
                for index, (slot, data) in enumerate(blobs.items()):
                    filename = f"{slot}.enc" if "/" not in slot else f"derived-{index}.enc"
                    blob = vault.write(staging / filename, f"personas/{bundle_id}/{slot}", data)
                    files[slot] = {"file": filename, "sha256": _sha(blob), "size": len(blob)}
                manifest = {"format": FORMAT, "id": bundle_id, "name": name,
                            "created_at": utc_now().isoformat(timespec="seconds"), "consent": consent.to_dict(),
                            "files": files, "voice_rate": VOICE_RATE, "photo_shape": list(photo.shape)}
                self._write_manifest(staging, manifest, bundle_id)
                os.rename(staging, final)
                fsync_dir(self.personas)
                self.audit.append("persona_created", persona=bundle_id, scope=sorted(consent.scope),
                                  state_sha256=state_digest(consent_state(consent)),
                                  expires=consent.expires.isoformat() if consent.expires else None,
                                  evidence_sha256=consent.evidence_sha256, derived=sorted(derived))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                shutil.rmtree(final, ignore_errors=True)
                raise
        return bundle_id

    @staticmethod
    def _derive(derive: Derive | None, persona: Persona) -> dict[str, bytes]:
        if derive is None:
            return {}
        result = derive(persona)
        if not isinstance(result, dict):
            raise TypeError("derive hook must return dict[str, bytes]")
        for key, value in result.items():
            if not (isinstance(key, str) and _DERIVED_KEY.match(key) and isinstance(value, (bytes, bytearray))):
                raise TypeError(f"derive hook returned a bad entry {key!r}: keys are short lowercase names, "
                                "values bytes")
        return {key: bytes(value) for key, value in result.items()}

    # -- read -----------------------------------------------------------------------------------------

    def list(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Id, name and consent status of every persona; a damaged bundle is listed as damaged."""
        bundles = self._bundles()
        if bundles:
            self._unlock()
        rows = []
        for bundle in bundles:
            try:
                manifest = self._manifest(bundle)
                rows.append({"id": bundle.name, "name": manifest["name"],
                             "status": self._consent(manifest).status(now)})
            except (PersonaError, ConsentError) as exc:
                rows.append({"id": bundle.name, "name": None, "status": f"damaged: {exc}"})
        return sorted(rows, key=lambda row: (row["name"] is None, (row["name"] or "").casefold()))

    def show(self, name: str, now: datetime | None = None) -> dict[str, Any]:
        """Metadata and consent of one persona; never photo, voice or derived content."""
        bundle, manifest = self._find(name)
        consent = self._consent(manifest)
        try:
            self._check_rollback(bundle, manifest, consent)
            status = consent.status(now)
        except RollbackError as exc:
            status = f"refused: {exc}"
        return {"id": bundle.name, "name": manifest["name"], "created_at": manifest["created_at"],
                "status": status, "consent": consent.to_dict(),
                "derived": sorted(slot.split("/", 1)[1] for slot in manifest["files"]
                                  if slot.startswith("derived/")),
                "stored_bytes": sum(entry["size"] for entry in manifest["files"].values()),
                "has_notes": "notes" in manifest["files"]}

    def check_use(self, name: str, use: str = "call",
                  now: datetime | None = None) -> tuple[Path, dict[str, Any], ConsentRecord]:
        """(bundle, manifest, consent) if the persona may be used for `use` now; ConsentError if not.

        Nothing of the likeness is decrypted, so a running call can ask again before each new far end."""
        bundle, manifest = self._find(name)
        consent = self._consent(manifest)
        self._check_rollback(bundle, manifest, consent)  # an old manifest must not bring consent back
        consent.check(use, now)
        self.objections.check(consent.names, consent.born, f"persona '{manifest['name']}'")
        return bundle, manifest, consent

    def load(self, name: str, use: str = "call", now: datetime | None = None) -> Persona:
        """Decrypt a persona for `use`; consent is checked before any biometric data is decrypted."""
        bundle, manifest, consent = self.check_use(name, use, now)
        vault = self._unlock()
        plain: dict[str, bytes] = {}
        for slot, entry in manifest["files"].items():
            path = bundle / entry["file"]
            where = f"file {entry['file']} of persona '{manifest['name']}' ({bundle})"
            try:
                blob = path.read_bytes()
            except FileNotFoundError as exc:
                raise PersonaError(f"{where} is missing: restore the bundle from a backup, or delete the "
                                   "persona and create it again") from exc
            if len(blob) != entry["size"] or _sha(blob) != entry["sha256"]:
                raise PersonaError(f"{where} is truncated or was altered: restore the bundle from a backup, "
                                   "or delete the persona and create it again")
            try:
                plain[slot] = vault.unseal(f"personas/{bundle.name}/{slot}", blob, where)
            except VaultError as exc:
                raise PersonaError(str(exc)) from exc
        photo = cv2.imdecode(np.frombuffer(plain.pop("photo"), dtype=np.uint8), cv2.IMREAD_COLOR)
        voice = np.frombuffer(plain.pop("voice"), dtype="<f4").astype(np.float32)
        if photo is None:
            raise PersonaError(f"the photo of persona '{manifest['name']}' does not decode: delete the persona "
                               "and create it again")
        notes = plain.pop("notes", b"").decode("utf-8", errors="replace")
        derived = {slot.split("/", 1)[1]: data for slot, data in plain.items()}
        return Persona(name=manifest["name"], photo=photo, voice=voice, voice_rate=manifest["voice_rate"],
                       source=bundle, consent=consent, derived=derived, notes=notes)

    # -- change ---------------------------------------------------------------------------------------

    def revoke(self, name: str, reason: str | None = None, now: datetime | None = None,
               by: str | None = None) -> ConsentRecord:
        """Mark consent revoked; the persona stays on disk (for the record) but can no longer be loaded.

        `by` names the next of kin who takes their consent back (any one of them who consented can).
        """
        self._unlock()
        with self._locked():
            bundle, manifest = self._find(name)
            consent = self._consent(manifest)
            if consent.revoked_at:
                return consent
            consent = consent.revoke(reason, now, by=by)
            self._write_manifest(bundle, {**manifest, "consent": consent.to_dict()}, bundle.name)
            self.audit.append("consent_revoked", persona=bundle.name, reason=consent.revoked_reason,
                              state_sha256=state_digest(consent_state(consent)))
        return consent

    def decide(self, name: str, by: str, evidence_path: str | Path, withhold: bool = False,
               now: datetime | None = None) -> ConsentRecord:
        """Record one next of kin's own consent (or refusal) with their evidence document."""
        evidence_path = Path(evidence_path)
        if not evidence_path.is_file() or evidence_path.stat().st_size == 0:
            raise ConsentError(f"consent evidence {evidence_path} is missing or empty: give this next of kin's "
                               "signed document")
        sha = sha256_file(evidence_path)
        self._unlock()
        with self._locked():
            bundle, manifest = self._find(name)
            before = self._consent(manifest)
            consent = before.decide(by, sha, evidence_path.name, withhold, now)
            if consent != before:
                self._write_manifest(bundle, {**manifest, "consent": consent.to_dict()}, bundle.name)
                index = next(i for i, (a, b) in enumerate(zip(before.kin, consent.kin)) if a != b)
                self.audit.append("kin_consent", persona=bundle.name, kin=index, evidence_sha256=sha,
                                  state="withheld" if withhold else "consented")
        return consent

    def set_notes(self, name: str, text: str) -> str:
        """Replace the operator's notes on a persona (encrypted in its bundle); empty text removes them."""
        if not isinstance(text, str) or len(text) > MAX_NOTES:
            raise PersonaError(f"persona notes are over {MAX_NOTES} characters: keep them to a few pages")
        text = text.replace("\r\n", "\n").strip("\n")
        vault = self._unlock()
        with self._locked():
            bundle, manifest = self._find(name)
            files = dict(manifest["files"])
            old = files.pop("notes", None)
            if text.strip():
                filename = f"notes-{secrets.token_hex(4)}.enc"  # a new file: the old one stays valid until the
                blob = vault.write(bundle / filename, f"personas/{bundle.name}/notes",  # manifest points away
                                   text.encode("utf-8"))
                files["notes"] = {"file": filename, "sha256": _sha(blob), "size": len(blob)}
            self._write_manifest(bundle, {**manifest, "files": files}, bundle.name)
            if old is not None and old["file"] != files.get("notes", {}).get("file"):
                (bundle / old["file"]).unlink(missing_ok=True)
            self.audit.append("notes_changed", persona=bundle.name, chars=len(text))
        return bundle.name

    def notes(self, name: str) -> str:
        """The operator's notes on a persona ("" when none); its likeness is not decrypted."""
        bundle, manifest = self._find(name)
        entry = manifest["files"].get("notes")
        if entry is None:
            return ""
        where = f"the notes of persona '{manifest['name']}' ({bundle})"
        try:
            blob = (bundle / entry["file"]).read_bytes()
            if _sha(blob) != entry["sha256"]:
                raise PersonaError(f"{where} were altered: write them again with `evercall persona notes`")
            return self._unlock().unseal(f"personas/{bundle.name}/notes", blob, where).decode("utf-8", "replace")
        except FileNotFoundError as exc:
            raise PersonaError(f"{where} are missing: write them again with `evercall persona notes`") from exc
        except VaultError as exc:
            raise PersonaError(str(exc)) from exc

    def delete(self, name: str) -> str:
        """Remove every file of the persona (derived data included) and its folder; returns the id."""
        self._unlock()
        with self._locked():
            bundle = self._find_for_delete(name)
            trash = self.personas / f"{_DELETING}{bundle.name}"
            os.rename(bundle, trash)  # gone from list/load at once, even if removal is interrupted
            fsync_dir(self.personas)
            removed = 0
            for path in sorted(trash.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
                    removed += 1
            trash.rmdir()
            fsync_dir(self.personas)
            self.audit.append("persona_deleted", persona=bundle.name, files=removed)
        return bundle.name

    def _find_for_delete(self, name: str) -> Path:
        """Like _find, but a bundle named by its id is deleted even when damaged (its manifest unreadable)."""
        candidate = self.personas / name.strip()
        if name.strip() and not name.startswith(".") and "/" not in name and candidate.is_dir():
            return candidate
        return self._find(name)[0]
