"""Every recorded next of kin is heard: a persona is usable only when all of them consented, and any one
of those who consented can stop it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from engine.audit import AuditLog
from engine.consent import ConsentRecord, KinConsent, sha256_file
from engine.errors import ConsentError
from engine.resolve import open_persona
from engine.store import PersonaStore
from tests.stores import cli

DERIVED = {"voice_profile": np.linspace(-1, 1, 64, dtype="<f4").tobytes()}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A face photo, a 4 s voice-like WAV and one evidence document per relative."""
    from skimage import data

    folder = tmp_path_factory.mktemp("kin-media")
    cv2.imwrite(str(folder / "face.png"), cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (256, 256)))
    t = np.arange(4 * 16000) / 16000
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(str(folder / "voice.wav"), voice.astype(np.float32), 16000, subtype="PCM_16")
    files = {"photo": folder / "face.png", "voice": folder / "voice.wav"}
    for who in ("anna", "ben", "carl"):
        files[who] = folder / f"{who}-consent.pdf"
        files[who].write_bytes(f"%PDF-1.4 signed by {who}\n".encode())
    return files


def make(media: dict[str, Path], name: str = "Grandma Rose", kin: tuple[str, ...] = ("Ben Miller, son",),
         **kwargs) -> str:
    """A stored persona: Anna consented at creation, every `kin` still to answer."""
    record = ConsentRecord(consented_by="Anna Miller", relationship="daughter",
                           evidence_sha256=sha256_file(media["anna"]), evidence_name="anna-consent.pdf",
                           kin=tuple(KinConsent(*k.split(", ")) for k in kin), **kwargs)
    return PersonaStore().create(name, media["photo"], media["voice"], record, media["anna"],
                                 derive=lambda persona: dict(DERIVED))


def test_two_recorded_kin_refused_until_both_consent(home, media, capsys):
    make(media)
    with pytest.raises(ConsentError, match=r"still needs the consent of Ben Miller \(son\)"):
        open_persona("Grandma Rose", "call")
    with pytest.raises(ConsentError, match="Ben Miller"):
        open_persona("Grandma Rose", "render")
    assert cli(["persona", "show", "Grandma Rose"]) == 0
    shown = capsys.readouterr().out
    assert "missing:       consent of Ben Miller (son)" in shown
    assert "waiting for the consent of Ben Miller (son)" in shown
    assert "Anna Miller (daughter): consented" in shown

    # His own document, his name typed with other case and spacing.
    assert cli(["persona", "consent", "Grandma Rose", "--by", "  ben   MILLER ", "--evidence",
                str(media["ben"])]) == 0
    persona = open_persona("Grandma Rose", "call")
    assert [(k.name, k.state) for k in persona.consent.kin] == [("Anna Miller", "consented"),
                                                                 ("Ben Miller", "consented")]
    assert persona.consent.kin[1].evidence_sha256 == sha256_file(media["ben"])
    capsys.readouterr()
    assert cli(["persona", "show", "Grandma Rose"]) == 0
    shown = capsys.readouterr().out
    assert "missing:" not in shown and sha256_file(media["ben"]) in shown
    events = [r["event"] for r in AuditLog(home / "audit.log").records()]
    assert events == ["persona_created", "kin_consent"]


def test_withheld_consent_blocks_until_given(home, media):
    make(media, kin=("Ben Miller, son", "Carl Miller, son"))
    store = PersonaStore()
    store.decide("Grandma Rose", "Ben Miller", media["ben"])
    store.decide("Grandma Rose", "Carl Miller", media["carl"], withhold=True)
    assert store.show("Grandma Rose")["status"] == "consent withheld by Carl Miller (son)"
    with pytest.raises(ConsentError, match=r"Carl Miller \(son\) withheld consent"):
        open_persona("Grandma Rose", "call")
    store.decide("Grandma Rose", "Carl Miller", media["carl"])  # he changed his mind, on his own document
    assert open_persona("Grandma Rose", "call").consent.status() == "valid"


def test_one_revocation_stops_new_calls(home, media, capsys):
    make(media)
    PersonaStore().decide("Grandma Rose", "Ben Miller", media["ben"])
    open_persona("Grandma Rose", "call")  # usable: both consented
    assert cli(["persona", "revoke", "Grandma Rose", "--by", "Ben Miller", "--reason", "not ready"]) == 0
    for use in ("call", "render"):
        with pytest.raises(ConsentError, match=r"revoked on .*\(not ready\)"):
            open_persona("Grandma Rose", use)
    consent = PersonaStore().show("Grandma Rose")["consent"]
    assert [k["state"] for k in consent["kin"]] == ["consented", "revoked"]
    # Revoked is final: nobody's consent brings it back.
    with pytest.raises(ConsentError, match="cannot be given again"):
        PersonaStore().decide("Grandma Rose", "Ben Miller", media["ben"])
    assert "consent_revoked" in [r["event"] for r in AuditLog(home / "audit.log").records()]


def test_serve_refuses_after_a_kin_revocation(home, media, capsys):
    from calls.cli import main

    make(media, kin=())
    PersonaStore().revoke("Grandma Rose", by="Anna Miller")
    code = main(["serve", "--persona", "Grandma Rose", "--source", str(media["voice"]), "--port", "0"])
    assert code == 2 and "revoked" in capsys.readouterr().err


def test_only_recorded_kin_who_consented_can_answer_or_revoke(home, media):
    make(media)
    store = PersonaStore()
    with pytest.raises(ConsentError, match=r"not a recorded next of kin .*Anna Miller \(daughter\), Ben Miller"):
        store.decide("Grandma Rose", "Stranger", media["carl"])
    with pytest.raises(ConsentError, match="--withhold"):
        store.revoke("Grandma Rose", by="Ben Miller")  # he never consented: he withholds instead
    with pytest.raises(ConsentError, match="already consented.*persona revoke"):
        store.decide("Grandma Rose", "Anna Miller", media["anna"], withhold=True)
    with pytest.raises(ConsentError, match="missing or empty"):
        store.decide("Grandma Rose", "Ben Miller", media["ben"].with_name("nope.pdf"))
    assert store.show("Grandma Rose")["consent"]["revoked_at"] is None


def test_single_consent_create_still_works(home, media, capsys):
    from calls.cli import main

    assert main(["persona", "create", "Grandma Rose", "--photo", str(media["photo"]), "--voice",
                 str(media["voice"]), "--consent-by", "Anna Miller", "--relationship", "daughter",
                 "--evidence", str(media["anna"])]) == 0
    consent = open_persona("Grandma Rose", "call").consent
    assert [(k.name, k.relationship, k.state, k.evidence_name) for k in consent.kin] == \
        [("Anna Miller", "daughter", "consented", "anna-consent.pdf")]


def test_cli_create_records_every_kin(home, media, capsys):
    from calls.cli import main

    assert main(["persona", "create", "Grandma Rose", "--photo", str(media["photo"]), "--voice",
                 str(media["voice"]), "--kin", "Anna Miller, daughter", "--kin", "Ben Miller, son",
                 "--consent-by", "Anna Miller", "--evidence", str(media["anna"]), "--born", "1931"]) == 0
    out = capsys.readouterr().out
    assert "once these next of kin consent too: Ben Miller (son)" in out
    consent = PersonaStore().show("Grandma Rose")["consent"]
    assert [(k["name"], k["relationship"], k["state"]) for k in consent["kin"]] == \
        [("Anna Miller", "daughter", "consented"), ("Ben Miller", "son", "pending")]
    assert consent["born"] == 1931
    assert main(["persona", "create", "Other", "--photo", str(media["photo"]), "--voice", str(media["voice"]),
                 "--kin", "Ben Miller", "--consent-by", "Anna", "--relationship", "x",
                 "--evidence", str(media["anna"])]) == 2
    assert "Full Name, relationship" in capsys.readouterr().err


def test_records_written_before_kin_read_as_one_consenting_kin():
    old = {"consented_by": "Ann", "relationship": "son", "evidence_sha256": "ab" * 32, "evidence_name": "c.pdf",
           "scope": ["call"], "recorded_at": "2026-01-02T03:04:05+00:00"}
    record = ConsentRecord.from_dict(old)
    assert record.kin == (KinConsent("Ann", "son", "consented", "ab" * 32, "c.pdf", "2026-01-02T03:04:05+00:00"),)
    assert ConsentRecord.from_json(record.to_json()) == record
    record.check("call")


async def test_revocation_during_a_call_turns_the_next_far_end_away(home, demo, tmp_path):
    """serve was started while both had consented; one of them revokes: the next far end is refused."""
    import aiohttp
    from aiortc import RTCPeerConnection

    from calls.serve import ServeOptions, start_call
    from calls.sources import FileSource
    from filters.factory import derive

    evidence = {who: tmp_path / f"{who}.pdf" for who in ("anna", "ben")}
    for who, path in evidence.items():
        path.write_bytes(f"signed by {who}".encode())
    record = ConsentRecord(consented_by="Anna Miller", relationship="daughter",
                           evidence_sha256=sha256_file(evidence["anna"]), kin=(KinConsent("Ben Miller", "son"),))
    store = PersonaStore()
    store.create("Grandma Rose", demo.persona_dir / "photo.png", demo.persona_dir / "voice.wav", record,
                 evidence["anna"], derive=derive)
    store.decide("Grandma Rose", "Ben Miller", evidence["ben"])
    call = await start_call(open_persona("Grandma Rose", "call"), FileSource(demo.operator_clip), ServeOptions(port=0))
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        store.revoke("Grandma Rose", by="Ben Miller")
        async with aiohttp.ClientSession() as session:
            async with session.post(call.join_url + "/offer", json=offer) as resp:
                assert resp.status == 403
                assert "no longer available" in await resp.text()
        assert call.state.peer is None
    finally:
        await pc.close()
        await call.stop()
