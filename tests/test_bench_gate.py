"""The CI gate catches a face filter that got slow, on a short real call through the relay, and lets a normal one pass.

Only ratios are asserted (the gate's own), never absolute times: the machine is shared and noisy.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from benchmarks import gate
from benchmarks.latency import draw_barcode, measure, passthrough_pipeline, read_barcode
from engine.face_contract import FaceOutput
from engine.pipeline import CallPipeline
from engine.voice_contract import PassthroughVoice

SECONDS = 3.0  # of measured call per path, after 1 s of warm-up
# The margins that measure a filter's own cost and nothing of the machine's other work. The rest (frame rate
# kept, transport and audio delay, lip sync) also measure how busy the machine is: on a busy machine (the
# gate's contention figure above BUSY_MACHINE, twice) they may fail for a normal filter and are reported.
FILTER_OWN = {"face_frame_budget", "voice_rtf"}


class _Soften:
    """A light real filter (a blur above the barcode strip): a millisecond or two of pixel work."""

    def __init__(self, extra_s: float = 0.0) -> None:
        self.extra_s = extra_s

    def process(self, image: np.ndarray, t_capture: float) -> FaceOutput:
        if self.extra_s:
            time.sleep(self.extra_s)  # a regression: this much longer a frame
        out = image.copy()
        out[:400] = cv2.GaussianBlur(out[:400], (5, 5), 0)
        return FaceOutput(out, True, "converted")

    def close(self) -> None:
        pass


def _normal() -> CallPipeline:
    return CallPipeline(_Soften(), PassthroughVoice()).start()


def _slowed() -> CallPipeline:
    return CallPipeline(_Soften(extra_s=0.06), PassthroughVoice()).start()  # 60 ms: twice the frame interval


def test_barcode_survives_the_filter_and_reads_back() -> None:
    image = np.full((480, 640, 3), 128, np.uint8)
    draw_barcode(image, 51234)
    assert read_barcode(_Soften().process(image, 0.0).image) == 51234
    assert read_barcode(np.full((480, 640), 128, np.uint8)) is None, "no strip: no number"


async def _measure() -> dict:
    return await measure({"passthrough": (passthrough_pipeline, True), "normal": (_normal, True),
                          "slowed": (_slowed, True)}, seconds=SECONDS, warmup=1.0)


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.timeout(240)
async def test_gate_fails_a_slowed_face_filter_and_passes_the_normal_one() -> None:
    result = await _measure()
    normal = gate.evaluate(result, candidate="normal")
    if not normal.passed:  # a neighbour may have hogged the cores: judge a second measurement, say why
        print("first measurement failed the normal filter, measuring again:\n" + "\n".join(normal.lines))
        result = await _measure()
        normal = gate.evaluate(result, candidate="normal")
    slowed = gate.evaluate(result, candidate="slowed")

    busy = (normal.contention or 0) > gate.BUSY_MACHINE
    if busy:
        # Twice measured on a machine busy enough to slow the relay itself: the normal filter must still pass
        # the margins of its own cost, which the slowed one fails below.
        print("busy machine (contention %.1f): the normal filter judged on its own cost\n%s"
              % (normal.contention, "\n".join(normal.lines)))
        assert not FILTER_OWN & set(normal.failed), "\n".join(normal.lines)
    else:
        assert normal.passed, "\n".join(normal.lines)
    assert not slowed.passed, "\n".join(slowed.lines)
    assert {"face_frame_budget", "output_fps_ratio"} <= set(slowed.failed), "\n".join(slowed.lines)
    assert any(line.startswith("FAIL face_frame_budget") and "max 0.8" in line for line in slowed.lines)
    paths = result["paths"]
    assert paths["normal"]["video"]["illegible_frames"] == 0, "the filter must leave the barcode readable"
    # Every click but one reaches the far end; on a busy machine (which drops late audio) at least half do,
    # so the audio figures above were measured on something.
    audio = paths["normal"]["audio"]
    assert audio["clicks_heard"] >= (audio["clicks_sent"] // 2 if busy else audio["clicks_sent"] - 1), audio
