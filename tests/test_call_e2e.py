"""A far end joins the link over WebRTC and receives the persona's face and a voice that is not silent."""

from __future__ import annotations

import asyncio

import aiohttp
import cv2
import numpy as np
import pytest

from calls.serve import ServeOptions, start_call
from calls.sources import FileSource
from benchmarks.gate import BUSY_MACHINE
from benchmarks.latency import LoadProbe
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


async def _call(demo, demo_persona) -> tuple[dict, list[dict], int, float]:
    """A 6 s call: (what the far end got, the relay's A/V figures every 0.25 s of its second half, frames
    the relay sent, how contended the CPU was: 1 idle, 3-6 with three busy processes on two cores)."""
    source = FileSource(demo.operator_clip, loop=True)
    probe = LoadProbe().start()
    call = await start_call(demo_persona, source, ServeOptions(port=0))
    pipeline = call.state.pipeline
    sent = count_frames_sent(pipeline)
    figures: list[dict] = []

    async def sample() -> None:
        await asyncio.sleep(3.0)  # connected and settled by then
        while True:
            figures.append(pipeline.stats()["av"])
            await asyncio.sleep(0.25)
    sampler = asyncio.ensure_future(sample())
    try:
        got = await _join(call.join_url, seconds=6.0)
        async with aiohttp.ClientSession() as session:
            async with session.get(call.join_url + "x") as resp:
                assert resp.status == 403
    finally:
        sampler.cancel()
        await call.stop()
        contention = probe.stop() or 1.0
    assembly = call.state.config.assembly
    got["ids"] = (assembly.persona_id, assembly.call_id)
    return got, [f for f in figures if f["skew_ms"] is not None], sent[0], contention


def _timing_problem(got: dict, figures: list[dict], sent: int) -> str | None:
    """What, if anything, this call failed on that a busy machine could explain; None when it kept time."""
    if sent < MIN_FRAMES:
        return f"the relay sent only {sent} frames in 6 s"
    received = len(got["frames"])
    # Judged against what this machine's relay sent (30 fps when idle; a busy machine sends fewer): the
    # transport must deliver nearly all of it, whatever the count.
    if received < 0.8 * sent:
        return f"the far end got {received} of the {sent} frames the relay sent"
    # Lips and voice leave the relay together: video waits for the slower voice path. (The 20 ms figure is
    # the benchmark's to prove on a quiet machine; here the voice delay itself moves with the load, so the
    # check is relative, and over the call's second half rather than at one instant: without the alignment
    # the skew is most of the voice delay.)
    if not figures:
        return "the relay never measured its A/V skew"
    skew = float(np.median([abs(f["skew_ms"]) for f in figures]))
    voice = float(np.median([f["audio_send_delay_ms"] for f in figures]))
    if skew > max(20.0, 0.3 * voice):
        return f"A/V skew {skew:.0f} ms (median) against a voice delay of {voice:.0f} ms"
    return None


@pytest.mark.slow
@pytest.mark.realtime
async def test_far_end_receives_persona_face_and_voice(demo, demo_persona) -> None:
    got, figures, sent, contention = await _call(demo, demo_persona)
    if (problem := _timing_problem(got, figures, sent)) is not None:  # once more, saying why
        print(f"first try: {problem} (CPU contention {contention:.1f}); retrying")
        got, figures, sent, contention = await _call(demo, demo_persona)
        problem = _timing_problem(got, figures, sent)
    assert got["state"] == "connected"
    assert problem is None or contention > BUSY_MACHINE, \
        f"{problem} (twice, on a machine that was not busy: contention {contention:.1f})"
    skip_why = f"timing not judged: {problem}, twice, with the CPU contended {contention:.1f}x (above " \
               f"{BUSY_MACHINE}: other work held the cores)"
    received = len(got["frames"])
    if problem is not None and received < MIN_FRAMES:
        pytest.skip(skip_why + "; too few frames to judge the face either")
    recent = got["frames"][received // 2:]
    sample = recent[::max(1, len(recent) // 10)]
    faced, closer = closer_to_persona(sample, demo_persona.photo, cv2.imread(str(demo.operator_photo)))
    assert faced >= len(sample) // 2, f"the received video should show a face ({faced}/{len(sample)})"
    assert closer / faced >= 0.9, f"only {closer}/{faced} received frames look like the persona"
    audio = np.concatenate(got["audio"][-150:])
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert rms > 0.01, f"far end audio is silent (rms {rms:.4f})"
    # The voice carries the call's provenance mark through Opus: the far end's sound names this call. (It is
    # marked as it leaves, so the voice a starved relay drops or pads does not break it: judged on any machine.)
    from filters.watermark.voice import detect_audio

    heard = np.concatenate(got["audio"])[::2]  # left channel of the decoded 48 kHz stereo
    found = [w for w in detect_audio(heard, 48000) if w.found]
    assert found and all(w.matches(*got["ids"]) for w in found), "the far end's voice should carry the call's mark"
    if problem is not None:  # everything else was judged; real-time keeping cannot be, on this machine now
        pytest.skip(skip_why)
