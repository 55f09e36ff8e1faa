"""What an editor of the store's files could undo (issue 14, items 3, 4, 10), each found or refused.

Before the hardening: a forged record with a recomputed hash, a removed tail, a re-chained deletion and
an emptied log all passed `audit verify`; restoring an old manifest brought a revoked persona back; a
damaged vault.json said "wrong passphrase", a damaged manifest said "no persona named", and a deleted
vault.json let `create` write a new key beside personas it could never open again.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from engine.audit import canonical, record_hash
from engine.consent import ConsentRecord, sha256_file
from engine.errors import ConsentError, PersonaError
from engine.store import PersonaStore
from engine.vault import VaultError
from tests.stores import cli



@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("media")
    cv2.imwrite(str(folder / "face.png"), cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (256, 256)))
    t = np.arange(4 * 16000) / 16000
    sf.write(str(folder / "voice.wav"), (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    (folder / "consent.pdf").write_bytes(b"%PDF-1.4 signed consent\n")
    return {"photo": folder / "face.png", "voice": folder / "voice.wav", "evidence": folder / "consent.pdf"}


def create(media: dict[str, Path], name: str = "Grandma Rose") -> str:
    consent = ConsentRecord(consented_by="Ann Example", relationship="daughter",
                            evidence_sha256=sha256_file(media["evidence"]))
    return PersonaStore().create(name, media["photo"], media["voice"], consent, media["evidence"],
                                 derive=lambda persona: {"voice_profile": b"x" * 64})


def verify_kinds(capsys) -> tuple[int, str]:
    code = cli(["audit", "verify"])
    return code, capsys.readouterr().out


@pytest.fixture
def history(home, media) -> Path:
    """A store with a few records: created, revoked, created again, and two renders."""
    create(media)
    PersonaStore().revoke("Grandma Rose", "family decision")
    create(media, "Grandpa Joe")
    log = PersonaStore().audit
    log.append("render", persona="p", call="c1")
    log.append("render", persona="p", call="c2")
    return home / "audit.log"


# -- 4. the audit log cannot be rewritten without the passphrase -----------------------------------------


def test_intact_history_verifies(history, capsys) -> None:
    code, out = verify_kinds(capsys)
    assert code == 0, out


def test_an_appended_forgery_fails_verify(history, capsys) -> None:
    rows = history.read_text().splitlines()
    last = json.loads(rows[-1])
    forged = {"seq": last["seq"] + 1, "time": last["time"], "event": "consent_revoked",
              "fields": {"persona": "someone"}, "prev_hash": last["hash"]}
    forged["hash"] = record_hash(forged)
    forged["mac"] = "0" * 64
    history.write_text("\n".join(rows + [canonical(forged).decode()]) + "\n")
    code, out = verify_kinds(capsys)
    assert code == 1 and "forged" in out, out


def test_a_removed_tail_fails_verify(history, capsys) -> None:
    rows = history.read_text().splitlines()
    history.write_text("\n".join(rows[:-2]) + "\n")
    code, out = verify_kinds(capsys)
    assert code == 1 and "removed" in out, out


def test_a_rechained_deletion_fails_verify(history, capsys) -> None:
    records = [json.loads(row) for row in history.read_text().splitlines()]
    del records[1]  # the revocation, then re-chain everything after it with fresh hashes
    previous = records[0]["hash"]
    for seq, record in enumerate(records, start=1):
        record["seq"], record["prev_hash"] = seq, previous if seq > 1 else record["prev_hash"]
        record["hash"] = record_hash(record)
        previous = record["hash"]
    history.write_text("\n".join(canonical(r).decode() for r in records) + "\n")
    code, out = verify_kinds(capsys)
    assert code == 1 and "forged" in out, out


def test_an_emptied_log_fails_verify(history, capsys) -> None:
    history.write_text("")
    code, out = verify_kinds(capsys)
    assert code == 1 and "removed" in out, out
    history.unlink()
    (history.parent / "audit.log.head").unlink()
    code, out = verify_kinds(capsys)
    assert code == 1 and "missing" in out, "a store with personas and no log at all fails too"


# -- 3. a restored old manifest cannot bring a revoked persona back --------------------------------------


def test_restored_manifest_is_refused_naming_the_revocation(home, media, capsys) -> None:
    persona_id = create(media)
    manifest = home / "personas" / persona_id / "manifest.enc"
    before = manifest.read_bytes()
    PersonaStore().revoke("Grandma Rose", "family decision")
    manifest.write_bytes(before)  # no passphrase needed to copy a file back
    for use in ("render", "call"):
        with pytest.raises(ConsentError) as err:
            PersonaStore().load("Grandma Rose", use=use)
        text = str(err.value)
        assert "revoked on" in text and "older copy" in text and "\n" not in text
    assert "refused" in PersonaStore().show("Grandma Rose")["status"]


def test_restored_manifest_with_a_lifted_expiry_is_refused(home, media) -> None:
    from datetime import date

    consent = ConsentRecord(consented_by="Ann Example", relationship="daughter",
                            evidence_sha256=sha256_file(media["evidence"]), expires=date(2999, 1, 1))
    store = PersonaStore()
    persona_id = store.create("Rose", media["photo"], media["voice"], consent, media["evidence"],
                              derive=lambda persona: {})
    bundle = home / "personas" / persona_id
    manifest = json.loads(store._unlock().unseal(f"personas/{persona_id}/manifest",
                                                 (bundle / "manifest.enc").read_bytes(), "test"))
    manifest["consent"]["expires"] = None  # what an older copy with no expiry would hold
    store._write_manifest(bundle, manifest, persona_id)  # (made here with the key, for brevity)
    with pytest.raises(ConsentError, match="older copy"):
        PersonaStore().load("Rose", use="render")


# -- 10. messages that say what happened -----------------------------------------------------------------


def test_damaged_vault_json_is_not_called_a_wrong_passphrase(home, media) -> None:
    create(media)
    config_path = home / "vault.json"
    config = json.loads(config_path.read_text())
    config["check"] = ("A" if config["check"][0] != "A" else "B") + config["check"][1:]
    config_path.write_text(json.dumps(config))
    with pytest.raises(VaultError) as err:
        PersonaStore().load("Grandma Rose")
    assert "damaged" in str(err.value) and "wrong passphrase" not in str(err.value)


def test_damaged_manifest_is_not_called_a_missing_persona(home, media) -> None:
    persona_id = create(media)
    manifest = home / "personas" / persona_id / "manifest.enc"
    data = bytearray(manifest.read_bytes())
    data[-5] ^= 0xFF
    manifest.write_bytes(bytes(data))
    for action in (lambda: PersonaStore().load("Grandma Rose"), lambda: PersonaStore().show("Grandma Rose")):
        with pytest.raises(PersonaError) as err:
            action()
        text = str(err.value)
        assert "no persona named" not in text and "cannot be read" in text and persona_id in text


def test_deleted_vault_json_never_makes_a_new_key(home, media) -> None:
    create(media)
    (home / "vault.json").unlink()
    with pytest.raises(VaultError) as err:
        create(media, "Another")
    assert "missing" in str(err.value) and "restore" in str(err.value)
    assert not (home / "vault.json").exists(), "no new key was written beside the old personas"
    assert len(list((home / "personas").iterdir())) == 1
