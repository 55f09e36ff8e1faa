"""A family member's objection refuses any likeness of the person: at creation, in calls and in renders,
even after the register file is swapped for an old copy; it is encrypted, in the audit log, and only its
filer can withdraw it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from calls.cli import main
from engine.audit import AuditLog
from engine.errors import ConsentError
from engine.objections import ObjectionRegister
from engine.resolve import open_persona
from tests.test_kin import make, media  # noqa: F401  (fixtures)

FILER = "Paul Miller, brother"


@pytest.fixture
def letter(tmp_path) -> Path:
    path = tmp_path / "objection.pdf"
    path.write_bytes(b"%PDF-1.4 we do not accept the use of AI to resurrect our relatives\n")
    return path


def file_objection(letter: Path, person: str = "Rose Miller", born: int | None = 1931) -> None:
    argv = ["objection", "add", "--person", person, "--by", FILER, "--evidence", str(letter)]
    assert main(argv + (["--born", str(born)] if born else [])) == 0


def test_objection_blocks_create_without_naming_the_objector(home, media, letter, capsys):  # noqa: F811
    file_objection(letter)
    date = ObjectionRegister().list()[0].filed_at[:10]
    for kwargs in ({"full_name": "  rose   MILLER "}, {"full_name": "Rose Miller", "born": 1931}):
        with pytest.raises(ConsentError, match=f"objection .* on {date}") as refusal:
            make(media, name="Grandma Rose", kin=(), **kwargs)
        assert "Paul" not in str(refusal.value) and "brother" not in str(refusal.value)
    assert not (home / "personas").exists() or not any((home / "personas").iterdir())
    # The persona's own name is matched too, and through the CLI the refusal is one line with exit code 2.
    code = main(["persona", "create", "Rose Miller", "--photo", str(media["photo"]), "--voice", str(media["voice"]),
                 "--consent-by", "Anna Miller", "--relationship", "daughter", "--evidence", str(media["anna"])])
    err = capsys.readouterr().err
    assert code == 2 and date in err and "Paul" not in err
    # Another Rose Miller, born in another year, is not this person.
    make(media, name="Grandma Rose", kin=(), full_name="Rose Miller", born=1950)
    open_persona("Grandma Rose", "call")


def test_objection_blocks_serve_and_render_of_an_existing_persona(home, media, letter, tmp_path, capsys):  # noqa: F811
    make(media, name="Grandma Rose", kin=(), full_name="Rose Miller")
    open_persona("Grandma Rose", "call")
    file_objection(letter)
    out = tmp_path / "out.mp4"
    assert main(["render", "--persona", "Grandma Rose", "--input", str(media["voice"]), "--output", str(out)]) == 2
    assert "objection" in capsys.readouterr().err and not out.exists()
    assert main(["serve", "--persona", "Grandma Rose", "--source", str(media["voice"]), "--port", "0"]) == 2
    assert "objection" in capsys.readouterr().err
    # Withdrawn by the filer (same document): usable again.
    assert main(["objection", "withdraw", "--evidence", str(letter)]) == 0
    open_persona("Grandma Rose", "render")


def test_objection_survives_a_restored_old_register(home, media, letter, tmp_path):  # noqa: F811
    make(media, name="Grandma Rose", kin=(), full_name="Rose Miller")
    other = tmp_path / "other.pdf"
    other.write_bytes(b"objection about someone else")
    file_objection(other, person="Someone Else", born=None)
    register = home / "objections" / "register.enc"
    old_copy = tmp_path / "register.old"
    shutil.copy2(register, old_copy)

    file_objection(letter)
    shutil.copy2(old_copy, register)  # an older copy, made before the objection, put back
    with pytest.raises(ConsentError, match="no longer holds.*restore its latest copy"):
        open_persona("Grandma Rose", "call")
    register.unlink()  # no register at all is no better
    with pytest.raises(ConsentError, match="no longer holds"):
        open_persona("Grandma Rose", "render")
    with pytest.raises(ConsentError, match="no longer holds"):
        make(media, name="Rose again", kin=(), full_name="ROSE MILLER")
    shutil.copy2(old_copy, register)
    make(media, name="Someone new", kin=())  # personas no objection covers are not held hostage
    open_persona("Someone new", "call")

    # Filed again with the same document, it takes back its old date; then its filer can withdraw it.
    file_objection(letter)
    with pytest.raises(ConsentError, match="filed an objection"):
        open_persona("Grandma Rose", "call")
    ObjectionRegister().withdraw(letter, person="Rose Miller")
    open_persona("Grandma Rose", "call")


def test_objections_are_in_the_audit_log_and_encrypted(home, media, letter):  # noqa: F811
    file_objection(letter)
    ObjectionRegister().withdraw(letter)
    log = AuditLog(home / "audit.log")
    records = [r for r in log.records() if r["event"].startswith("objection")]
    assert [r["event"] for r in records] == ["objection_added", "objection_withdrawn"]
    assert records[0]["fields"]["evidence_sha256"] and len(records[0]["fields"]["person_mac"]) == 64
    assert all(r["mac"] and r["fields"]["state_sha256"] for r in records)  # sealed, bound to the register
    assert log.verify().ok
    for path in home.rglob("*"):
        if path.is_file():
            blob = path.read_bytes().lower()
            assert b"rose" not in blob and b"paul" not in blob, path


def test_only_the_filer_can_withdraw(home, media, letter, tmp_path, capsys):  # noqa: F811
    file_objection(letter)
    forged = tmp_path / "forged.pdf"
    forged.write_bytes(b"I am Paul, honestly")
    assert main(["objection", "withdraw", "--evidence", str(forged), "--person", "rose miller"]) == 2
    assert "SHA-256 differs" in capsys.readouterr().err
    assert main(["objection", "list"]) == 0
    listed = capsys.readouterr().out
    assert "Rose Miller (born 1931)" in listed and "standing" in listed and "Paul" not in listed


def test_folder_persona_is_checked_too(home, demo, letter, tmp_path):  # noqa: F811
    folder = tmp_path / "Rose Miller"
    shutil.copytree(demo.persona_dir, folder)
    file_objection(letter, born=None)
    with pytest.raises(ConsentError, match="objection"):
        open_persona(folder, "call")


def test_a_forged_or_cut_log_does_not_lift_an_objection(home, media, letter):  # noqa: F811
    make(media, name="Grandma Rose", kin=(), full_name="Rose Miller")
    file_objection(letter)
    objection = ObjectionRegister().list()[0].id
    (home / "objections" / "register.enc").unlink()
    # A withdrawal written without the passphrase is unsealed: it counts for nothing.
    AuditLog(home / "audit.log", key=lambda: None).append("objection_withdrawn", objection=objection, version=99,
                                                          register="objections")
    with pytest.raises(ConsentError, match="no longer holds"):
        open_persona("Grandma Rose", "call")
    # Every objection line cut out of the log: the sealed head no longer matches, nothing is trusted.
    log = home / "audit.log"
    log.write_text("".join(line for line in log.read_text().splitlines(keepends=True) if "objection" not in line))
    with pytest.raises(ConsentError, match="audit log .* was altered"):
        open_persona("Grandma Rose", "call")
