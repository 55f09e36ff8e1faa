"""Fuzz and abuse (issue 14): random and hostile requests against every route and the console socket,
mangled photos, voices and videos through persona creation and render.

Each must end in a 4xx (one line of text where it is text) or a one-line error (exit code 2 from the
CLI), never a 500, a traceback or a partial file, and the real far end must still be let in afterwards.
Bounded for CI: example counts are small and fixed, no example database is written, no deadline per
example (the cores are shared), about a minute in all.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote

import aiohttp
import av
import cv2
import numpy as np
import pytest
import requests
import soundfile as sf
from aiohttp import web
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.latency import passthrough_pipeline
from calls.invites import FarEndSeat
from calls.server import CallServer, CallConfig, CallState
from engine.errors import EvercallError

ROOT = Path(__file__).resolve().parents[1]


def bounded(examples: int) -> settings:
    """A fixed number of examples, reproducible, no example database, no per-example deadline."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# -- payloads ----------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=16), inner, max_size=4),
    max_leaves=16)
hostile_text = st.sampled_from([
    "", "<img src=x onerror=alert(1)>", "<script>renew()</script>", "\u00e9t\u00e9", "\x00", "\ud800" * 3,
    "false", "true", "0", "NaN", "v=0", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "A" * 5000, "../../etc/passwd",
])
report_like = st.fixed_dictionaries({}, optional={
    "connectionState": hostile_text | json_values, "at": json_values,
    "video": st.dictionaries(st.sampled_from(["framesDecoded", "framesPerSecond", "<b>"]), json_values | hostile_text,
                             max_size=3) | json_values,
    "audio": json_values, "sent": json_values, "picture": json_values, "voice": json_values,
    "network": json_values, "screen": json_values,
    "snapshot": hostile_text | st.just("data:image/jpeg;base64,////") | json_values})
offer_like = st.fixed_dictionaries({}, optional={"sdp": hostile_text | json_values,
                                                 "type": st.sampled_from(["offer", "answer", "", "OFFER"]) | json_values})
command_like = st.fixed_dictionaries({}, optional={
    "action": st.sampled_from(["mute", "card", "mode", "end", "renew", "<b>", ""]) | json_values,
    "on": st.sampled_from(["false", "true", 0, 1, None, True, False]) | json_values,
    "mode": hostile_text | st.sampled_from(["swap", "portrait"]) | json_values})
raw_bodies = st.sampled_from([
    b"", b"{", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"\xff\xfe\xfd",
    b'{"sdp": NaN, "type": "offer"}', b'{"sdp": 1e999999}', b"null", b"[]", b'"offer"', b"x" * 200_000,
])


def encoded(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


bodies = raw_bodies | report_like.map(encoded) | offer_like.map(encoded) | command_like.map(encoded) \
    | json_values.map(encoded)


# -- a live server in its own thread (Hypothesis drives it with plain blocking requests) ----------------


@pytest.fixture(scope="module")
def live():
    pipeline = passthrough_pipeline()
    state = CallState(pipeline=pipeline, config=CallConfig(persona_name="fuzz"), seat=FarEndSeat(connect_timeout_s=0.5))
    server = CallServer(state)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(server.app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["runner"], box["port"] = runner, site._server.sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield state, f"http://127.0.0.1:{box['port']}"
    asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(20)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    pipeline.close()


def check_response(response: requests.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    assert "Traceback" not in response.text, what
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("text/plain"):
        assert len(response.text.strip().splitlines()) <= 1, f"{what}: {response.text[:300]}"


async def _real_far_end(base: str, token: str) -> int:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/join/{token}/offer", json={"sdp": pc.localDescription.sdp,
                                                                        "type": "offer"}) as r:
                return r.status
    finally:
        await pc.close()


def real_far_end_is_admitted(state: CallState, base: str) -> None:
    """After the fuzzing: the seat frees within its connect timeout and a genuine offer gets an answer."""
    import time

    time.sleep(state.seat.connect_timeout_s + 0.5)
    assert asyncio.run(_real_far_end(base, state.invite.token)) == 200


def paths(state: CallState) -> st.SearchStrategy[tuple[str, str]]:
    """(method, path) over every route, with good, wrong and strange tokens."""
    strange = st.text(min_size=1, max_size=30).map(lambda t: quote(t, safe=""))
    join = st.sampled_from([state.invite.token, "wrong"]) | strange
    operator = st.sampled_from([state.config.operator_token, "wrong"]) | strange
    wrong_operator = st.sampled_from(["wrong", "\u00e9"]).map(lambda t: quote(t, safe="")) | strange
    return st.one_of(
        st.tuples(st.sampled_from(["GET", "POST", "PUT"]), st.just("/")),
        st.tuples(st.just("GET"), join.map(lambda t: f"/join/{t}")),
        st.tuples(st.sampled_from(["POST", "GET"]), st.tuples(join, st.sampled_from(["offer", "report", "viewport"]))
                  .map(lambda p: f"/join/{p[0]}/{p[1]}")),
        st.tuples(st.just("GET"), st.tuples(operator, st.sampled_from(["", "/stats.json", "/notes.json", "/ws"]))
                  .map(lambda p: f"/operator/{p[0]}{p[1]}")),
        # long-lived streams and withdrawing the link only with tokens that are refused
        st.tuples(st.sampled_from(["GET", "POST"]), st.tuples(wrong_operator, st.sampled_from(
            ["/preview.mjpg", "/farend.mjpg", "/invite/revoke", "/invite/renew"])).map(lambda p: f"/operator/{p[0]}{p[1]}")),
        st.tuples(st.just("GET"), (st.sampled_from(["operator.js", "join.js", "..%2Fserver.py", "x.py"]) | strange)
                  .map(lambda n: f"/static/{n}")),
    )


def test_every_route_answers_hostile_requests_with_4xx(live) -> None:
    state, base = live
    session = requests.Session()

    @bounded(150)
    @given(route=paths(state), body=bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]),
           origin=st.sampled_from([None, "https://evil.example", base]))
    def probe(route, body, content_type, origin) -> None:
        method, path = route
        headers = {"Content-Type": content_type} if content_type else {}
        if origin:
            headers["Origin"] = origin
        response = session.request(method, base + path, data=body if method != "GET" else None,
                                   headers=headers, timeout=20)
        check_response(response, f"{method} {path} {body[:80]!r}")

    probe()
    assert not state.invite.revoked
    real_far_end_is_admitted(state, base)


def test_console_socket_survives_any_message(live) -> None:
    state, base = live
    url = f"{base}/operator/{state.config.operator_token}/ws"

    async def exchange(messages: list) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, max_msg_size=0) as ws:
                for message in messages:
                    if isinstance(message, bytes):
                        await ws.send_bytes(message)
                        continue
                    await ws.send_str(message)
                    while (reply := json.loads((await ws.receive(timeout=10)).data))["type"] != "result":
                        pass
                    assert isinstance(reply["ok"], bool) and "\n" not in reply["message"]
                    assert "Traceback" not in reply["message"]

    texts = bodies.map(lambda b: b.decode("utf-8", "replace")[:60_000])

    @bounded(40)
    @given(messages=st.lists(texts | command_like.map(json.dumps) | st.binary(max_size=64), min_size=1, max_size=4))
    def probe(messages) -> None:
        asyncio.run(exchange(messages))
        assert isinstance(state.pipeline.muted, bool)

    probe()
    real_far_end_is_admitted(state, base)


# -- mangled media -----------------------------------------------------------------------------------------


def mangle(data: bytes, draw) -> bytes:
    """Cut, flip, splice or repeat parts of a valid file."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):  # 0: the valid file itself, which must still work
        kind = draw(st.sampled_from(["cut", "flip", "junk", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "cut":
            del data[at:]
        elif kind == "flip" and data:
            for offset in range(draw(st.integers(1, 64))):
                data[(at + offset * 97) % len(data)] ^= draw(st.integers(1, 255))
        elif kind == "junk":
            data[at:at] = draw(st.binary(min_size=1, max_size=256))
        else:
            data[at:at] = data[at:at + 512]
    return bytes(data)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    from skimage import data

    face = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (128, 128))
    t = np.arange(4 * 16000) / 16000
    wav = io.BytesIO()
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000, format="WAV")
    return {"photo.png": cv2.imencode(".png", face)[1].tobytes(), "photo.jpg": cv2.imencode(".jpg", face)[1].tobytes(),
            "voice.wav": wav.getvalue(), "clip.mp4": tiny_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")}


def tiny_clip(path: Path) -> bytes:
    """Six small frames and 0.6 s of sound; the index first (faststart), so a cut file still opens and its
    damage is met while decoding, as with a phone video whose upload stopped."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        tone = (3000 * np.sin(np.arange(9600) / 5)).astype(np.int16).reshape(1, -1)
        chunk = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = 16000, 0, Fraction(1, 16000)
        for packet in list(audio.encode(chunk)) + list(audio.encode(None)):
            out.mux(packet)
    return path.read_bytes()


def test_mangled_photos_and_voices_are_refused_in_one_line(originals, tmp_path_factory) -> None:
    from engine.persona import choose_face, read_photo, read_voice

    folder = tmp_path_factory.mktemp("mangled")

    @bounded(60)
    @given(name=st.sampled_from(["photo.png", "photo.jpg", "voice.wav"]), data=st.data())
    def probe(name, data) -> None:
        path = folder / name
        path.write_bytes(mangle(originals[name], data.draw))
        try:
            if name.startswith("photo"):
                choose_face(read_photo(path))
            else:
                read_voice(path)
        except EvercallError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)

    probe()


def test_mangled_videos_render_or_fail_in_one_line_leaving_nothing(originals, demo_persona,
                                                                   tmp_path_factory) -> None:
    from calls.render import render

    folder = tmp_path_factory.mktemp("render-fuzz")
    outcomes: list[str] = []

    @bounded(12)
    @given(data=st.data())
    def probe(data) -> None:
        for stale in folder.iterdir():
            stale.unlink()
        source, out = folder / "in.mp4", folder / "out.mp4"
        source.write_bytes(mangle(originals["clip.mp4"], data.draw))
        try:
            render(demo_persona, source, out, progress=False)
        except EvercallError as exc:
            assert "\n" not in str(exc), str(exc)
            assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"], "a failed render leaves nothing"
            outcomes.append("refused")
        else:
            assert sorted(p.name for p in folder.iterdir()) == ["in.mp4", "out.mp4"]
            outcomes.append("rendered")

    probe()
    assert "rendered" in outcomes and len(outcomes) > outcomes.count("rendered"), f"the mangling must exercise both paths: {outcomes}"


@pytest.mark.parametrize("case", ["photo", "voice", "video"])
def test_cli_with_mangled_files_exits_2_in_one_line(case, originals, demo, tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("photo.png", "voice.wav", "clip.mp4")}
    for name, path in files.items():
        path.write_bytes(originals[name])
    target = {"photo": "photo.png", "voice": "voice.wav", "video": "clip.mp4"}[case]
    files[target].write_bytes(originals[target][: len(originals[target]) // 3] + b"\x00junk" * 7)
    (tmp_path / "consent.pdf").write_bytes(b"%PDF-1.4 consent\n")
    env = {"EVERCALL_HOME": str(tmp_path / "home"), "EVERCALL_PASSPHRASE": "fuzz", "EVERCALL_SCRYPT_N": "16"}
    if case == "video":
        argv = ["render", "--persona", str(demo.persona_dir), "--input", str(files["clip.mp4"]), "--output", str(tmp_path / "out.mp4")]
    else:
        argv = ["persona", "create", "Fuzz", "--photo", str(files["photo.png"]), "--voice", str(files["voice.wav"]),
                "--consent-by", "Ann", "--relationship", "daughter", "--evidence", str(tmp_path / "consent.pdf")]
    proc = subprocess.run([sys.executable, "-m", "calls.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-1500:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("error:"), proc.stderr[-1500:]
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".*partial*"))
    assert not (tmp_path / "home" / "personas").exists() or not any((tmp_path / "home" / "personas").iterdir())
