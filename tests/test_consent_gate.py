"""A call or a render with a persona that lacks valid consent is refused before any media is touched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from calls.cli import main
from engine.consent import ConsentRecord, sha256_file
from engine.errors import ConsentError
from engine.resolve import open_persona
from engine.store import PersonaStore


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PersonaStore:
    monkeypatch.setenv("EVERCALL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVERCALL_PASSPHRASE", "correct horse")
    return PersonaStore()


def _create(store: PersonaStore, demo, tmp_path: Path, name: str, **consent) -> None:
    from filters.factory import derive

    evidence = tmp_path / f"{name}-consent.txt"
    evidence.write_text(f"consent for {name}")
    record = ConsentRecord(consented_by="A. Relative", relationship="son", evidence_sha256=sha256_file(evidence),
                           evidence_name=evidence.name, **consent)
    store.create(name, demo.persona_dir / "photo.png", demo.persona_dir / "voice.wav", record, evidence,
                 derive=derive)


def test_store_persona_keeps_its_derived_data(store, demo, tmp_path) -> None:
    _create(store, demo, tmp_path, "Rose")
    persona = open_persona("Rose", "call")
    assert set(persona.derived) == {"face_landmarks", "voice_profile", "face_likeness", "face_advice"}


def test_render_refused_when_consent_excludes_it(store, demo, tmp_path, capsys) -> None:
    _create(store, demo, tmp_path, "CallOnly", scope={"call"})
    out = tmp_path / "out.mp4"
    code = main(["render", "--persona", "CallOnly", "--input", str(demo.operator_clip), "--output", str(out)])
    assert code == 2 and not out.exists()
    assert "does not include 'render'" in capsys.readouterr().err


def test_call_refused_after_revocation(store, demo, tmp_path, capsys) -> None:
    _create(store, demo, tmp_path, "Revoked")
    store.revoke("Revoked", reason="family asked")
    code = main(["serve", "--persona", "Revoked", "--source", str(demo.operator_clip), "--port", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "revoked" in err and "family asked" in err


def test_expired_consent_refused(store, demo, tmp_path) -> None:
    import datetime as dt

    _create(store, demo, tmp_path, "Expiring", expires=dt.date.today() + dt.timedelta(days=1))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    with pytest.raises(ConsentError, match="expired"):
        store.load("Expiring", use="call", now=later)


def test_folder_without_consent_record_is_refused(demo, tmp_path) -> None:
    folder = tmp_path / "plain"
    shutil.copytree(demo.persona_dir, folder)
    (folder / "consent.json").unlink()
    with pytest.raises(ConsentError, match="persona create"):
        open_persona(folder, "call")
