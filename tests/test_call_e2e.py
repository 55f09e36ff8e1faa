"""A far end joins the link over WebRTC and receives the persona's face and a voice that is not silent."""

from __future__ import annotations


import aiohttp
import numpy as np

from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from tests.farend import join_for
from benchmarks.identity import closer_to_persona


async def _join(url: str, seconds: float) -> dict:
    got: dict = {"frames": [], "audio": []}
    joined = await join_for(url, seconds,
                            on_video=lambda f: got["frames"].append(f.to_ndarray(format="bgr24")),
                            on_audio=lambda f: got["audio"].append(f.to_ndarray().astype(np.float32).reshape(-1) / 32768.0))
    got["state"] = joined["state"]
    return got


async def test_far_end_receives_persona_face_and_voice(demo, demo_persona) -> None:
    source = FileSource(demo.operator_clip, loop=True)
    call = await start_call(demo_persona, source, ServeOptions(port=0))
    try:
        got = await _join(call.join_url, seconds=6.0)
        av = call.state.pipeline.stats()["av"]
        async with aiohttp.ClientSession() as session:
            async with session.get(call.join_url + "x") as resp:
                assert resp.status == 403
    finally:
        await call.stop()

    assert got["state"] == "connected"
    # Lips and voice leave the relay together: video waits for the slower voice path. (The 20 ms figure is
    # the benchmark's to prove on a quiet machine; here, on a shared one, the voice delay itself moves with
    # the load, so the check is relative: without the alignment the skew is most of the voice delay.)
    assert av["skew_ms"] is not None, av
    assert abs(av["skew_ms"]) <= max(20.0, 0.3 * av["audio_send_delay_ms"]), av
    assert len(got["frames"]) > 60, "the far end should receive a steady stream of frames"
    import cv2
    faced, closer = closer_to_persona(got["frames"][-30::3], demo_persona.photo, cv2.imread(str(demo.operator_photo)))
    assert faced >= 5, "the received video should show a face"
    assert closer / faced >= 0.9, f"only {closer}/{faced} received frames look like the persona"
    audio = np.concatenate(got["audio"][-150:])
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert rms > 0.01, f"far end audio is silent (rms {rms:.4f})"
