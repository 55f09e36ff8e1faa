"""A far end joins the link over WebRTC and receives the persona's face and a voice that is not silent."""

from __future__ import annotations


import aiohttp
import numpy as np
import pytest

from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from tests.farend import count_frames_sent, join_for
from benchmarks.identity import closer_to_persona


async def _join(url: str, seconds: float) -> dict:
    got: dict = {"frames": [], "audio": []}
    joined = await join_for(url, seconds,
                            on_video=lambda f: got["frames"].append(f.to_ndarray(format="bgr24")),
                            on_audio=lambda f: got["audio"].append(f.to_ndarray().astype(np.float32).reshape(-1) / 32768.0))
    got["state"] = joined["state"]
    return got


MIN_FRAMES = 10  # fewer than this and there is too little to judge the face by


async def _call(demo, demo_persona) -> tuple[dict, dict, int]:
    """A 6 s call: (what the far end got, the relay's A/V figures, frames the relay sent)."""
    source = FileSource(demo.operator_clip, loop=True)
    call = await start_call(demo_persona, source, ServeOptions(port=0))
    pipeline = call.state.pipeline
    sent = count_frames_sent(pipeline)
    try:
        got = await _join(call.join_url, seconds=6.0)
        av = pipeline.stats()["av"]
        async with aiohttp.ClientSession() as session:
            async with session.get(call.join_url + "x") as resp:
                assert resp.status == 403
    finally:
        await call.stop()
    return got, av, sent[0]


@pytest.mark.slow
@pytest.mark.realtime
async def test_far_end_receives_persona_face_and_voice(demo, demo_persona) -> None:
    got, av, sent = await _call(demo, demo_persona)
    if sent < MIN_FRAMES:  # the machine was too busy to make a picture stream worth judging: once more
        print(f"first try: the relay sent only {sent} frames in 6 s; retrying")
        got, av, sent = await _call(demo, demo_persona)
    assert sent >= MIN_FRAMES, f"the relay sent only {sent} frames in 6 s twice: the machine is too busy"

    assert got["state"] == "connected"
    # Lips and voice leave the relay together: video waits for the slower voice path. (The 20 ms figure is
    # the benchmark's to prove on a quiet machine; here, on a shared one, the voice delay itself moves with
    # the load, so the check is relative: without the alignment the skew is most of the voice delay.)
    assert av["skew_ms"] is not None, av
    assert abs(av["skew_ms"]) <= max(20.0, 0.3 * av["audio_send_delay_ms"]), av
    # Judged against what this machine's relay sent (30 fps when idle; a busy machine sends fewer): the
    # transport must deliver nearly all of it, whatever the count.
    received = len(got["frames"])
    assert received >= 0.8 * sent, f"the far end got {received} of the {sent} frames the relay sent"
    import cv2
    recent = got["frames"][received // 2:]
    sample = recent[::max(1, len(recent) // 10)]
    faced, closer = closer_to_persona(sample, demo_persona.photo, cv2.imread(str(demo.operator_photo)))
    assert faced >= len(sample) // 2, f"the received video should show a face ({faced}/{len(sample)})"
    assert closer / faced >= 0.9, f"only {closer}/{faced} received frames look like the persona"
    audio = np.concatenate(got["audio"][-150:])
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert rms > 0.01, f"far end audio is silent (rms {rms:.4f})"
