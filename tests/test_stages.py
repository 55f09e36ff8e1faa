"""Hand-off between stages keeps delay bounded: newest wins for video, a bounded ring for audio."""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.media import VideoFrame, now
from engine.metrics import LatencyStats
from engine.stages import AudioRing, LatestSlot, Worker
from tests.waiting import until as _until


def _frame(seq: int, t_capture: float | None = None) -> VideoFrame:
    return VideoFrame(np.zeros((2, 2, 3), np.uint8), now() if t_capture is None else t_capture, seq)


class ManualClock:
    """A capture clock that moves only when the test says: release times are checked exactly."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_latest_slot_keeps_only_the_newest_and_counts_drops() -> None:
    dropped = []
    slot: LatestSlot[VideoFrame] = LatestSlot(on_drop=dropped.append)
    for i in range(5):
        slot.put(_frame(i))
    assert slot.get(timeout=0.1).seq == 4
    assert len(dropped) == 4
    assert slot.get(timeout=0.05) is None, "a taken item is not handed out twice"


async def test_latest_slot_wakes_async_readers_from_another_thread() -> None:
    slot: LatestSlot[VideoFrame] = LatestSlot()
    threading.Timer(0.05, lambda: slot.put(_frame(7))).start()
    version, item = await slot.wait_newer(0, timeout=2.0)
    assert version == 1 and item.seq == 7


def test_audio_ring_bounds_delay_and_pads_underruns() -> None:
    ring = AudioRing(1000, capacity_s=0.1)
    ring.write(np.arange(250, dtype=np.float32), t_capture=10.0)
    assert ring.buffered_s == 0.1, "the ring never holds more than its capacity"
    assert ring.dropped_samples == 150
    out, t = ring.read(50)
    assert out[0] == 150 and abs(t - 10.15) < 1e-9, "the oldest samples went, with their capture time"
    out, _ = ring.read(100)
    assert ring.underrun_samples == 50 and np.all(out[50:] == 0)


def test_slow_worker_skips_frames_instead_of_queueing() -> None:
    inbox: LatestSlot[VideoFrame] = LatestSlot()
    done: list[VideoFrame] = []
    stats = LatencyStats()
    busy, finish = threading.Event(), threading.Event()

    def slow(frame: VideoFrame) -> VideoFrame:
        busy.set()
        finish.wait(10)  # busy until the test has sent everything below
        return frame

    worker = Worker("slow", inbox, slow, done.append, stats).start()
    inbox.put(_frame(0))
    assert busy.wait(10), "the worker took the first frame"
    for i in range(1, 40):  # 39 frames arrive while the filter is busy
        inbox.put(_frame(i))
    finish.set()
    assert _until(lambda: len(done) == 2 and done[-1].seq == 39)
    inbox.close()
    worker.join()
    assert [f.seq for f in done] == [0, 39], "the newest frame is processed; those that came meanwhile are not queued"
    assert stats.summary()["count"] == len(done)


def test_worker_survives_a_failing_filter() -> None:
    inbox: LatestSlot[VideoFrame] = LatestSlot()
    done: list[VideoFrame] = []

    def flaky(frame: VideoFrame) -> VideoFrame:
        if frame.seq == 0:
            raise RuntimeError("boom")
        return frame

    worker = Worker("flaky", inbox, flaky, done.append, LatencyStats()).start()
    inbox.put(_frame(0))
    assert _until(lambda: worker.errors == 1)
    inbox.put(_frame(1))
    assert _until(lambda: len(done) == 1)
    inbox.close()
    worker.join()
    assert worker.errors == 1 and [f.seq for f in done] == [1]


def test_delay_line_releases_at_capture_time_plus_delay() -> None:
    from engine.stages import DelayLine

    clock = ManualClock()
    released: list[tuple[int, float]] = []
    line = DelayLine(lambda f: released.append((f.seq, clock() - f.t_capture)), delay=lambda: 0.08, clock=clock)
    t0 = clock()
    line.put(_frame(1, t_capture=t0))
    clock.t = t0 + 0.079
    time.sleep(0.3)  # real time passes, the capture clock does not: the line must keep holding the frame
    assert released == [], "nothing leaves before its delay is up"
    clock.t = t0 + 0.08
    assert _until(lambda: released), "due now: it leaves"
    line.close()
    assert [seq for seq, _ in released] == [1] and abs(released[0][1] - 0.08) < 1e-9, released


def test_delay_line_sends_only_the_newest_of_overdue_items() -> None:
    from engine.stages import DelayLine

    clock = ManualClock()
    released: list[int] = []
    dropped: list[int] = []
    line = DelayLine(lambda f: released.append(f.seq), delay=lambda: 0.05, on_drop=dropped.append, clock=clock)
    for i in range(5):
        line.put(_frame(i, t_capture=clock() + i * 0.01))
    clock.t += 1.0  # all five are long overdue when the line next looks
    assert _until(lambda: sum(dropped) + len(released) == 5)
    line.close()
    assert released == [4] and sum(dropped) == 4, (released, dropped)


async def test_audio_ring_wakes_an_async_reader_when_enough_samples_arrive() -> None:
    ring = AudioRing(1000, capacity_s=1.0)
    writer = threading.Timer(0.05, lambda: [ring.write(np.ones(30, np.float32), now()) for _ in range(2)])
    writer.start()
    assert await ring.wait_for(50, timeout=2.0), "60 samples arrived: the reader must be woken"
    assert ring.buffered_s * 1000 == 60
    assert not await ring.wait_for(100, timeout=0.05), "only 60 samples: the wait must time out"


async def test_readers_that_time_out_leave_nothing_behind() -> None:
    ring = AudioRing(1000, capacity_s=1.0)
    slot: LatestSlot[VideoFrame] = LatestSlot()
    for _ in range(50):  # a silent microphone and a stalled camera, polled for an hour, in miniature
        assert not await ring.wait_for(10, timeout=0.0)
        await slot.wait_newer(0, timeout=0.0)
    assert not ring._waiters._parked and not slot._waiters._parked, "timed-out waits must not pile up"
