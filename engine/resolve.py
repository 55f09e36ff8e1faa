"""Turning what the user typed after `--persona` into a Persona whose consent allows the use.

A persona comes from the encrypted store (by name or id), or from a plain folder that carries its own
`consent.json` (a ConsentRecord, with the evidence document beside it). Either way the consent record is
checked for the use (call or render) before anything else happens: no consent, no persona.
"""

from __future__ import annotations

from pathlib import Path

from engine.consent import ConsentRecord, sha256_file
from engine.errors import ConsentError, PersonaError
from engine.persona import Persona, load_persona_dir

CONSENT_FILE = "consent.json"


def folder_consent(folder: Path, name: str) -> ConsentRecord:
    """The consent record a persona folder carries, checked against its evidence document."""
    path = folder / CONSENT_FILE
    if not path.is_file():
        raise ConsentError(f"persona folder {folder} has no {CONSENT_FILE}: store the persona with its consent "
                           "first (`evercall persona create NAME --photo ... --voice ... --consent-by ... "
                           "--relationship ... --evidence FILE`) and use its name")
    try:
        record = ConsentRecord.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConsentError(f"{path} is not a valid consent record ({exc}): recreate it") from exc
    evidence = folder / record.evidence_name if record.evidence_name else None
    if evidence is None or not evidence.is_file():
        raise ConsentError(f"the consent evidence named in {path} is not in {folder}: put the document beside it")
    if sha256_file(evidence) != record.evidence_sha256:
        raise ConsentError(f"consent evidence {evidence} does not match its record (SHA-256 differs): "
                           "the document was changed; record the consent again")
    return ConsentRecord.from_dict({**record.to_dict(), "persona": name})


def check_still_usable(persona: Persona, use: str) -> None:
    """Ask again, decrypting nothing, whether a persona opened earlier may still be used for `use`.

    A call runs for hours: a next of kin may revoke, or an objection may be filed, meanwhile; the server
    asks before admitting each new far end. A persona from neither the store nor a folder (built in
    memory) has nothing to ask again."""
    source = persona.source
    if source is None:
        return
    from engine.store import PersonaStore

    store = PersonaStore()
    if Path(source).parent == store.personas:
        store.check_use(Path(source).name, use)
    elif Path(source).is_dir() and (Path(source) / CONSENT_FILE).is_file():
        open_persona_consent(Path(source), use)


def open_persona_consent(folder: Path, use: str) -> ConsentRecord:
    """A persona folder's consent, checked for `use` and against the objection register."""
    consent = folder_consent(folder, folder.name)
    consent.check(use)
    from engine.objections import ObjectionRegister

    ObjectionRegister().check(consent.names, consent.born, f"persona '{folder.name}'")
    return consent


def open_persona(spec: str | Path, use: str) -> Persona:
    """Load a persona for `use` ("call" or "render") from a folder or the store; consent is checked first."""
    folder = Path(spec)
    if folder.is_dir():
        consent = open_persona_consent(folder, use)
        persona = load_persona_dir(folder)
        persona.consent = consent
        return persona
    if any(sep in str(spec) for sep in ("/", "\\")):
        raise PersonaError(f"persona folder not found: {spec}")
    from engine.store import PersonaStore

    return PersonaStore().load(str(spec), use=use)
