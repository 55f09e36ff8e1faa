"""The persona store keeps likenesses only with consent, encrypted, and refuses what it must refuse."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from engine.audit import AuditLog
from engine.consent import ConsentRecord, sha256_file
from engine.errors import ConsentError, EvercallError, PersonaError
from engine.persona import read_voice
from engine.store import PersonaStore
from engine.vault import VaultError
from tests.stores import PASS, cli

DERIVED = {"landmarks": np.arange(468 * 3, dtype="<f4").tobytes(),
           "voice_profile": np.linspace(-1, 1, 256, dtype="<f4").tobytes()}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A real face photo (PNG), a 4 s voice-like WAV, and a consent document."""
    from skimage import data

    folder = tmp_path_factory.mktemp("media")
    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (256, 256))
    cv2.imwrite(str(folder / "face.png"), photo)
    rng = np.random.default_rng(7)
    t = np.arange(4 * 16000) / 16000
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    voice += 0.05 * rng.standard_normal(t.size)
    sf.write(str(folder / "voice.wav"), voice.astype(np.float32), 16000, subtype="PCM_16")
    (folder / "consent.pdf").write_bytes(b"%PDF-1.4 signed consent of the next of kin\n")
    return {"photo": folder / "face.png", "voice": folder / "voice.wav", "evidence": folder / "consent.pdf"}


def consent_for(media: dict[str, Path], **kwargs) -> ConsentRecord:
    return ConsentRecord(consented_by="Ann Example", relationship="daughter",
                         evidence_sha256=sha256_file(media["evidence"]), **kwargs)


def create(store: PersonaStore, media: dict[str, Path], name: str = "Grandma Rose", **kwargs) -> str:
    return store.create(name, media["photo"], media["voice"], consent_for(media, **kwargs), media["evidence"],
                        derive=lambda persona: dict(DERIVED))


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def bundle_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "personas").rglob("*") if p.is_file())


# -- creating ------------------------------------------------------------------------------------------


def test_round_trip_returns_the_same_likeness_consent_and_derived_data(home, media):
    store = PersonaStore()
    persona_id = create(store, media)
    persona = PersonaStore().load("grandma rose")  # a fresh object: everything comes from disk
    assert persona.name == "Grandma Rose"
    assert np.array_equal(persona.photo, cv2.imread(str(media["photo"])))
    assert np.array_equal(persona.voice, read_voice(media["voice"]))
    assert persona.voice.dtype == np.float32 and persona.voice_rate == 16000
    assert persona.derived == DERIVED
    assert persona.consent.consented_by == "Ann Example" and persona.consent.persona == "Grandma Rose"
    assert persona.consent.evidence_name == "consent.pdf"
    assert store.list() == [{"id": persona_id, "name": "Grandma Rose", "status": "valid"}]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "a\\b", ".hidden", "bad\x00name", "line\nbreak",
                                  "rtl\u202eevil", "", "x" * 65])
def test_bad_names_are_refused_and_nothing_is_written(home, media, name):
    with pytest.raises(PersonaError, match="persona name"):
        create(PersonaStore(), media, name=name)
    assert not home.exists() or not bundle_files(home)
    assert not (home.parent / "x").exists()


def test_no_consent_or_no_evidence_means_no_persona(home, media):
    store = PersonaStore()
    with pytest.raises(ConsentError, match="no consent record"):
        store.create("Rose", media["photo"], media["voice"], None, media["evidence"])
    with pytest.raises(ConsentError, match="no consent evidence"):
        store.create("Rose", media["photo"], media["voice"], consent_for(media), None)
    with pytest.raises(ConsentError, match="evidence"):
        ConsentRecord(consented_by="Ann", relationship="daughter", evidence_sha256="")
    other = media["evidence"].with_name("other.pdf")
    other.write_bytes(b"a different document")
    with pytest.raises(ConsentError, match="does not match"):
        store.create("Rose", media["photo"], media["voice"], consent_for(media), other)
    assert store.list() == []


def test_photo_and_voice_are_validated_with_their_own_messages(home, media, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(str(short), np.full(16000, 0.2, dtype=np.float32), 16000)
    with pytest.raises(PersonaError, match="at least 3 s"):
        PersonaStore().create("Rose", media["photo"], short, consent_for(media), media["evidence"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(PersonaError, match="cannot read persona photo"):
        PersonaStore().create("Rose", broken, media["voice"], consent_for(media), media["evidence"])


def test_duplicate_name_is_refused(home, media):
    store = PersonaStore()
    create(store, media)
    with pytest.raises(PersonaError, match="already exists"):
        create(store, media, name="GRANDMA ROSE")


# -- at rest -------------------------------------------------------------------------------------------


def test_store_on_disk_reveals_no_image_audio_or_derived_bytes(home, media, monkeypatch):
    written: list[bytes] = []  # every byte written, temp files included
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (written.append(bytes(data)), real_write(fd, data))[1])
    create(PersonaStore(), media)
    monkeypatch.setattr(os, "write", real_write)
    voice = read_voice(media["voice"]).astype("<f4").tobytes()
    photo_file = media["photo"].read_bytes()
    wav_file = media["voice"].read_bytes()
    secrets_ = {
        "png magic": b"\x89PNG\r\n\x1a\n", "jpeg/jfif": b"\xff\xd8\xff\xe0\x00\x10JFIF", "wav header": b"WAVEfmt ",
        "raw photo file": photo_file[200:264], "raw wav pcm": wav_file[2000:2064],
        "float32 voice": voice[40000:40064], "landmarks blob": DERIVED["landmarks"][400:464],
        "voice profile": DERIVED["voice_profile"][100:164],
        "decoded pixels": cv2.imread(str(media["photo"]))[128].tobytes()[:64],
        "persona name": "Grandma Rose".encode(), "next of kin": b"Ann Example"}
    files = [p for p in home.rglob("*") if p.is_file()]
    assert len(files) >= 6  # vault.json, audit.log, manifest, photo, voice, two derived
    assert len(written) >= 6
    for where, data in [(str(p), p.read_bytes()) for p in files] + [("a write", b) for b in written]:
        for what, needle in secrets_.items():
            assert needle not in data, f"{what} found in plain text in {where}"


def test_passphrase_can_come_from_the_os_keyring(home, media, monkeypatch):
    import sys
    import types

    asked = []
    fake = types.SimpleNamespace(get_password=lambda service, user: asked.append((service, user)) or PASS)
    monkeypatch.setitem(sys.modules, "keyring", fake)
    monkeypatch.delenv("EVERCALL_PASSPHRASE")
    create(PersonaStore(), media)
    assert asked == [("evercall", str(home))]
    monkeypatch.setenv("EVERCALL_PASSPHRASE", PASS)  # the same key: the keyring held the same passphrase
    assert PersonaStore().load("Grandma Rose").name == "Grandma Rose"


def test_wrong_passphrase_is_a_clear_error_and_changes_nothing(home, media, monkeypatch):
    create(PersonaStore(), media)
    before = snapshot(home)
    monkeypatch.setenv("EVERCALL_PASSPHRASE", "not the passphrase")
    store = PersonaStore()
    actions = [store.list, lambda: store.load("Grandma Rose"), lambda: store.show("Grandma Rose"),
               lambda: store.revoke("Grandma Rose"), lambda: store.delete("Grandma Rose"),
               lambda: create(store, media, name="Someone Else")]
    for action in actions:
        with pytest.raises(VaultError, match=re.escape(f"wrong passphrase for the persona store at {home}")):
            action()
    assert snapshot(home) == before


def test_missing_passphrase_is_a_clear_error(home, media, monkeypatch):
    monkeypatch.delenv("EVERCALL_PASSPHRASE")
    with pytest.raises(VaultError, match="EVERCALL_PASSPHRASE"):
        create(PersonaStore(), media)
    assert not (home / "personas").exists()


def test_swapped_files_between_personas_are_refused(home, media):
    store = PersonaStore()
    a, b = create(store, media, name="Rose"), create(store, media, name="Tom")
    (home / "personas" / a / "photo.enc").write_bytes((home / "personas" / b / "photo.enc").read_bytes())
    with pytest.raises(PersonaError, match="photo.enc of persona 'Rose'"):
        store.load("Rose")
    store.load("Tom")


# -- consent -------------------------------------------------------------------------------------------


def test_expired_consent_refuses_use_and_names_the_persona(home, media):
    store = PersonaStore()
    tomorrow = datetime.now(timezone.utc).date() + timedelta(days=1)
    create(store, media, expires=tomorrow)
    store.load("Grandma Rose")
    later = datetime.now(timezone.utc) + timedelta(days=2)
    with pytest.raises(ConsentError, match=f"persona 'Grandma Rose' expired on {tomorrow.isoformat()}"):
        store.load("Grandma Rose", use="call", now=later)
    assert store.list(now=later)[0]["status"] == f"expired on {tomorrow.isoformat()}"


def test_already_expired_consent_cannot_create_a_persona(home, media):
    with pytest.raises(ConsentError, match="expired on"):
        create(PersonaStore(), media, expires=date(2020, 1, 1))
    assert PersonaStore().list() == []


def test_revoked_consent_refuses_use_and_survives_reopening(home, media):
    store = PersonaStore()
    create(store, media)
    store.revoke("Grandma Rose", "family asked to stop")
    today = datetime.now(timezone.utc).date().isoformat()
    for use in ("call", "render"):
        with pytest.raises(ConsentError, match=f"persona 'Grandma Rose' was revoked on {today} "
                                               r"\(family asked to stop\)"):
            PersonaStore().load("Grandma Rose", use=use)
    assert PersonaStore().show("Grandma Rose")["status"] == f"revoked on {today}"


def test_scope_without_render_refuses_render_but_allows_call(home, media):
    store = PersonaStore()
    create(store, media, scope={"call"})
    assert store.load("Grandma Rose", use="call").consent.scope == {"call"}
    with pytest.raises(ConsentError, match="persona 'Grandma Rose' does not include 'render'"):
        store.load("Grandma Rose", use="render")


def test_consent_record_json_round_trip():
    record = ConsentRecord(consented_by="Ann", relationship="son", evidence_sha256="ab" * 32, scope={"call"},
                           expires=date(2031, 5, 1), evidence_name="form.pdf").revoke("asked")
    again = ConsentRecord.from_json(record.to_json())
    assert again == record and again.expires == date(2031, 5, 1) and again.scope == {"call"}


# -- damage and failure --------------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["photo.enc", "voice.enc", "manifest.enc", "derived-2.enc"])
def test_truncated_bundle_file_is_a_clear_error(home, media, victim):
    store = PersonaStore()
    persona_id = create(store, media)
    path = home / "personas" / persona_id / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PersonaError, match="truncated|damaged|altered"):
        PersonaStore().load(persona_id)


def test_missing_bundle_file_is_a_clear_error(home, media):
    persona_id = create(PersonaStore(), media)
    (home / "personas" / persona_id / "voice.enc").unlink()
    with pytest.raises(PersonaError, match="voice.enc .* is missing"):
        PersonaStore().load("Grandma Rose")


def test_delete_removes_every_file_and_the_folder(home, media):
    store = PersonaStore()
    keep = create(store, media, name="Tom")
    persona_id = create(store, media)
    assert len(list((home / "personas" / persona_id).iterdir())) == 5
    store.delete("Grandma Rose")
    assert not (home / "personas" / persona_id).exists()
    assert sorted(p.name for p in (home / "personas").iterdir()) == [keep]
    with pytest.raises(PersonaError, match="no persona named"):
        store.load("Grandma Rose")
    assert [row["name"] for row in store.list()] == ["Tom"]


def test_damaged_persona_can_still_be_deleted_by_id(home, media):
    store = PersonaStore()
    persona_id = create(store, media)
    (home / "personas" / persona_id / "manifest.enc").write_bytes(b"garbage")
    assert store.list()[0]["status"].startswith("damaged")
    store.delete(persona_id)
    assert not (home / "personas" / persona_id).exists()


def _disk_fills_after(monkeypatch, budget: int) -> None:
    """Let `budget` bytes through os.write, then fail like a full disk (undone with the context)."""
    real_write = os.write
    left = [budget]

    def write(fd, data):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = bytes(data[: min(len(data), left[0])])
        left[0] -= len(chunk)
        return real_write(fd, chunk)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("where", ["photo", "voice"])
def test_disk_full_during_create_leaves_nothing_loadable(home, media, monkeypatch, where):
    store = PersonaStore()
    tom = create(store, media, name="Tom")
    before = snapshot(home)
    photo_size = (home / "personas" / tom / "photo.enc").stat().st_size
    budget = photo_size // 2 if where == "photo" else photo_size + 10_000
    with monkeypatch.context() as patch:
        _disk_fills_after(patch, budget)
        with pytest.raises(VaultError, match="not enough disk space"):
            create(store, media)
    assert [p.name for p in (home / "personas").iterdir()] == [tom]  # no half-built bundle left behind
    assert [row["name"] for row in store.list()] == ["Tom"]
    with pytest.raises(PersonaError, match="no persona named"):
        store.load("Grandma Rose")
    assert not any(p.name.endswith(".tmp") for p in home.rglob("*"))
    assert snapshot(home) == before
    store.load("Tom")


def test_disk_full_during_revoke_keeps_the_previous_manifest(home, media, monkeypatch):
    store = PersonaStore()
    persona_id = create(store, media)
    before = snapshot(home)
    with monkeypatch.context() as patch:
        _disk_fills_after(patch, 20)  # partway through the new manifest
        with pytest.raises(VaultError, match="not enough disk space"):
            store.revoke("Grandma Rose", "test")
    assert snapshot(home) == before
    assert not list((home / "personas" / persona_id).glob(".*"))
    persona = PersonaStore().load("Grandma Rose")
    assert persona.consent.revoked_at is None


# -- audit and CLI -------------------------------------------------------------------------------------


def test_store_writes_a_verifiable_audit_trail_without_names(home, media):
    store = PersonaStore()
    persona_id = create(store, media)
    store.revoke("Grandma Rose", "no longer wanted")
    store.delete("Grandma Rose")
    log = AuditLog(home / "audit.log")
    records = log.records()
    assert [r["event"] for r in records] == ["persona_created", "consent_revoked", "persona_deleted"]
    assert {r["fields"]["persona"] for r in records} == {persona_id}
    assert log.verify().ok


def test_cli_create_list_show_revoke_delete(home, media, capsys):
    assert cli(["persona", "create", "Grandma Rose", "--photo", str(media["photo"]), "--voice",
                str(media["voice"]), "--consent-by", "Ann Example", "--relationship", "daughter",
                "--evidence", str(media["evidence"]), "--scope", "call", "--expires", "2999-01-01"]) == 0
    assert cli(["persona", "list"]) == 0
    assert "Grandma Rose  valid until 2999-01-01" in capsys.readouterr().out
    assert cli(["persona", "show", "Grandma Rose"]) == 0
    shown = capsys.readouterr().out
    assert "Ann Example (daughter)" in shown and "scope:         call" in shown
    assert sha256_file(media["evidence"]) in shown
    assert cli(["persona", "revoke", "Grandma Rose", "--reason", "family decision"]) == 0
    with pytest.raises(ConsentError, match="revoked"):
        PersonaStore().load("Grandma Rose")
    with pytest.raises(PersonaError, match="--yes"):
        cli(["persona", "delete", "Grandma Rose"])
    assert cli(["persona", "delete", "Grandma Rose", "--yes"]) == 0
    assert cli(["audit", "verify"]) == 0
    assert "3 records, chain intact" in capsys.readouterr().out


def test_cli_refuses_traversal_and_missing_evidence(home, media, capsys):
    base = ["--photo", str(media["photo"]), "--voice", str(media["voice"]), "--consent-by", "Ann",
            "--relationship", "son"]
    with pytest.raises(EvercallError, match="looks like a path"):
        cli(["persona", "create", "../x", *base, "--evidence", str(media["evidence"])])
    with pytest.raises(SystemExit) as exit_:
        cli(["persona", "create", "Rose", *base])
    assert exit_.value.code == 2 and "--evidence" in capsys.readouterr().err


def test_cli_help_teaches_consent_and_settings(capsys):
    with pytest.raises(SystemExit):
        cli(["persona", "create", "--help"])
    text = capsys.readouterr().out
    for phrase in ("next of kin", "signed consent form", "EVERCALL_HOME", "EVERCALL_PASSPHRASE", "--expires"):
        assert phrase in text
