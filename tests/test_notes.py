"""Persona notes: kept encrypted in the bundle, edited in a private temp file, shown to the operator beside
the picture (filter box, `n` hides them), and never in anything the far end receives."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import stat
import sys
from pathlib import Path

import aiohttp

from calls.cli import main
from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from engine.store import PersonaStore
from benchmarks.browser import DESKTOP, devtools_page, require_chromium
from tests.test_kin import make, media  # noqa: F401  (fixtures)

NOTES = """Family: Anna (daughter, calls her Mama), Ben (son, lives in Toronto)
Always asked: have you eaten yet?
Never bring up the shop fire of 1998
Grandchildren: Lily and Sam"""


def test_notes_round_trip_encrypted(home, media, tmp_path, capsys):  # noqa: F811
    make(media, kin=())
    source = tmp_path / "notes.txt"
    source.write_text(NOTES, encoding="utf-8")
    assert main(["persona", "notes", "Grandma Rose", "--from", str(source)]) == 0
    capsys.readouterr()
    assert main(["persona", "notes", "Grandma Rose"]) == 0
    assert capsys.readouterr().out.strip() == NOTES
    for path in (home / "personas").rglob("*"):
        if path.is_file():
            assert b"have you eaten" not in path.read_bytes() and b"Toronto" not in path.read_bytes(), path
    persona = PersonaStore().load("Grandma Rose", "call")
    assert persona.notes == NOTES
    assert PersonaStore().show("Grandma Rose")["has_notes"]
    assert main(["persona", "notes", "Grandma Rose", "--clear"]) == 0
    assert PersonaStore().load("Grandma Rose", "call").notes == ""
    assert [p.name for p in (home / "personas").rglob("notes-*")] == []  # the old notes file is gone


def test_notes_edit_uses_a_private_temp_file_removed_after(home, media, tmp_path, monkeypatch):  # noqa: F811
    make(media, kin=())
    PersonaStore().set_notes("Grandma Rose", "first line")
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(f"""import os, stat, sys
path = sys.argv[1]
folder = os.path.dirname(path)
text = open(path, encoding="utf-8").read()
open({str(seen)!r}, "w").write(folder + "\\n" + oct(stat.S_IMODE(os.stat(folder).st_mode)) + "\\n" + text)
open(path, "a", encoding="utf-8").write("\\nsecond line")
""")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.delenv("VISUAL", raising=False)
    assert main(["persona", "notes", "Grandma Rose", "--edit"]) == 0
    folder, mode, *text = seen.read_text().split("\n")
    assert mode == oct(stat.S_IRWXU) and text == ["first line"]  # 0700, and it started from the stored notes
    assert not Path(folder).exists()
    assert PersonaStore().notes("Grandma Rose") == "first line\nsecond line"
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c 'import sys; sys.exit(3)'")
    assert main(["persona", "notes", "Grandma Rose", "--edit"]) == 2  # a failed editor changes nothing
    assert PersonaStore().notes("Grandma Rose") == "first line\nsecond line"


async def _far_end_receives(call) -> list[str]:
    """Everything a far end can fetch with its link: its page, the page's scripts and styles, the answer to its
    offer and the reply to its report."""
    from aiortc import RTCPeerConnection

    got: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(call.join_url) as resp:
            page = await resp.text()
            got.append(page)
        for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            async with session.get(call.base_url + ref) as resp:
                got.append(await resp.text())
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        try:
            async with session.post(call.join_url + "/offer", json={"sdp": pc.localDescription.sdp,
                                                                    "type": "offer"}) as resp:
                assert resp.status == 200
                got.append(await resp.text())
            async with session.post(call.join_url + "/report", json={"video": {"framesPerSecond": 25}}) as resp:
                got.append(f"{resp.status} {await resp.text()}")
        finally:
            await pc.close()
        # The far end's link cannot reach the operator's routes.
        token = call.join_url.rsplit("/", 1)[1]
        async with session.get(f"{call.base_url}/operator/{token}/notes.json") as resp:
            assert resp.status == 403
            got.append(await resp.text())
    return got


async def test_notes_on_the_operator_page_never_at_the_far_end(demo, demo_persona) -> None:
    require_chromium()
    persona = dataclasses.replace(demo_persona, notes=NOTES)
    call = await start_call(persona, FileSource(demo.operator_clip), ServeOptions(port=0))
    try:
        for body in await _far_end_receives(call):
            for phrase in ("have you eaten", "Toronto", "shop fire", "notes.json", "notes.js"):
                assert phrase not in body

        async with devtools_page(call.operator_url, DESKTOP) as (page, _browser):
            await page.send("Page.navigate", {"url": call.operator_url})

            async def until(expression: str) -> object:
                for _ in range(100):
                    value = await page.evaluate(expression)
                    if value:
                        return value
                    await asyncio.sleep(0.15)
                raise AssertionError(f"the operator page never satisfied: {expression}")

            shown = await until("!document.getElementById('notes').hidden && "
                                "document.getElementById('notes-list').innerText")
            assert "have you eaten yet?" in shown and "Toronto" in shown
            # Beside the picture: same row as the outgoing preview, to its right.
            assert await page.evaluate(
                "(() => { const n = document.getElementById('notes').getBoundingClientRect(),"
                " p = document.querySelector('img[alt=\"outgoing picture\"]').getBoundingClientRect();"
                " return n.left > p.right && n.top < p.bottom; })()")

            await page.evaluate("document.getElementById('notes-filter').focus()")
            await page.send("Input.insertText", {"text": "eaten"})
            await until("document.querySelectorAll('#notes-list li').length === 1")
            assert await page.evaluate("document.getElementById('notes-list').innerText.trim()") == \
                "Always asked: have you eaten yet?"
            # `n` typed into the filter is text, not the hide key.
            await page.send("Input.insertText", {"text": "n"})
            assert await page.evaluate("document.getElementById('notes').hidden") is False

            await page.evaluate("document.getElementById('notes-filter').blur()")
            for kind in ("keyDown", "keyUp"):
                await page.send("Input.dispatchKeyEvent", {"type": kind, "key": "n", "code": "KeyN", "text": "n",
                                                           "windowsVirtualKeyCode": 78})
            await until("document.getElementById('notes').hidden")
            assert await page.evaluate("document.getElementById('notes').offsetHeight") == 0
            for kind in ("keyDown", "keyUp"):
                await page.send("Input.dispatchKeyEvent", {"type": kind, "key": "n", "code": "KeyN", "text": "n",
                                                           "windowsVirtualKeyCode": 78})
            await until("!document.getElementById('notes').hidden")
    finally:
        await call.stop()


async def test_without_notes_the_operator_gets_none(demo, demo_persona) -> None:
    call = await start_call(dataclasses.replace(demo_persona, notes=""), FileSource(demo.operator_clip),
                            ServeOptions(port=0))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(call.operator_url + "/notes.json") as resp:
                assert resp.status == 200 and await resp.json() == {"notes": ""}
    finally:
        await call.stop()
