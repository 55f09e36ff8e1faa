"""Hand-off between stages that keeps delay bounded.

Video uses `LatestSlot`: a one-item mailbox where a new frame replaces an unread one (newest wins), so a
slow stage skips frames instead of building a queue. Audio cannot skip like that without gaps, so it uses
`AudioRing`: a bounded sample buffer that drops its oldest samples when a consumer falls behind and
pads with silence when it runs dry, so its delay never grows past its capacity.
`Worker` runs one function over a slot's items on its own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Generic, TypeVar

import numpy as np

from engine.media import now
from engine.metrics import LatencyStats

T = TypeVar("T")
log = logging.getLogger(__name__)


class AsyncWaiters:
    """asyncio readers parked on a buffer that threads fill: `park` under the buffer's lock, `wake` after.

    A writer thread cannot resolve a future directly (futures belong to their event loop), so each one is
    resolved through its loop's `call_soon_threadsafe`.
    """

    def __init__(self) -> None:
        self._parked: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def park(self) -> asyncio.Future:
        """A future that the next `wake` resolves (call with the owner's lock held)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._parked.append((loop, fut))
        return fut

    def forget(self, fut: asyncio.Future) -> None:
        """Drop a future whose reader stopped waiting (call with the owner's lock held): a reader that times
        out again and again on a silent buffer must not pile up futures until the next write."""
        self._parked = [(loop, f) for loop, f in self._parked if f is not fut]

    def take(self) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]:
        """Everything parked so far, emptied (call with the owner's lock held, then `wake` outside it)."""
        parked, self._parked = self._parked, []
        return parked

    @staticmethod
    def wake(parked: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]) -> None:
        for loop, fut in parked:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    @staticmethod
    async def until(fut: asyncio.Future, timeout: float) -> bool:
        """Await `fut` for at most `timeout` s; True when it was resolved."""
        try:
            await asyncio.wait_for(fut, max(0.0, timeout))
            return True
        except asyncio.TimeoutError:
            return False


class LatestSlot(Generic[T]):
    """Newest-wins mailbox. `put` never blocks; readers wait for an item newer than the one they saw."""

    def __init__(self, on_drop: Callable[[int], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._version = 0
        self._taken = 0
        self._closed = False
        self._on_drop = on_drop
        self._waiters = AsyncWaiters()

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None and self._taken < self._version and self._on_drop:
                self._on_drop(1)
            self._item = item
            self._version += 1
            self._cond.notify_all()
            parked = self._waiters.take()
        AsyncWaiters.wake(parked)

    def get(self, timeout: float | None = None) -> T | None:
        """Block for an item not yet taken by `get`; None on timeout or close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._version > self._taken, timeout):
                return None
            if self._closed and self._version <= self._taken:
                return None
            self._taken = self._version
            return self._item

    def peek(self) -> tuple[int, T | None]:
        """The newest item and its version, without taking it (many readers may peek)."""
        with self._cond:
            return self._version, self._item

    async def wait_newer(self, version: int, timeout: float) -> tuple[int, T | None]:
        """Await an item whose version is above `version` (for asyncio readers such as WebRTC tracks)."""
        with self._cond:
            if self._version > version or self._closed:
                return self._version, self._item
            fut = self._waiters.park()
        if not await AsyncWaiters.until(fut, timeout):
            with self._cond:
                self._waiters.forget(fut)
        return self.peek()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            parked = self._waiters.take()
        AsyncWaiters.wake(parked)

    @property
    def closed(self) -> bool:
        return self._closed


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class AudioRing:
    """Bounded mono float32 buffer with the capture time of its oldest sample.

    `write` past capacity drops the oldest samples (counted); `read(n)` always returns n samples,
    padding with silence when short (counted as underruns), so the reader's clock never stalls.

    `on_read` (the voice's provenance mark) is applied to exactly what the reader gets, padding included:
    marking on the way out keeps the mark's timeline continuous however much was dropped or padded
    before. Should it fail, the reader gets silence (counted), never an unmarked voice.
    """

    def __init__(self, sample_rate: int, capacity_s: float = 0.5,
                 on_read: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.sample_rate = sample_rate
        self.capacity = int(capacity_s * sample_rate)
        self._on_read = on_read
        self.on_read_errors = 0
        self._buf = np.zeros(0, dtype=np.float32)
        self._t_first: float | None = None
        self._lock = threading.Condition()
        self.dropped_samples = 0
        self.underrun_samples = 0
        self._waiters = AsyncWaiters()

    def write(self, samples: np.ndarray, t_capture: float) -> None:
        with self._lock:
            if self._buf.size == 0:
                self._t_first = t_capture
            self._buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
            self._drop_oldest(keep=self.capacity)
            self._lock.notify_all()
            parked = self._waiters.take()
        AsyncWaiters.wake(parked)

    def take(self, n: int, timeout: float) -> tuple[np.ndarray, float] | None:
        """Block until n samples are buffered and return them with the first one's capture time."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._buf.size >= n, timeout):
                return None
            out, self._buf = self._buf[:n], self._buf[n:]
            t_first = self._t_first if self._t_first is not None else now()
            self._t_first = t_first + n / self.sample_rate if self._buf.size else None
            return out, t_first

    async def wait_for(self, n: int, timeout: float) -> bool:
        """Await (on an event loop) until n samples are buffered; False if `timeout` s pass first."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with self._lock:
                if self._buf.size >= n:
                    return True
                fut = self._waiters.park()
            if not await AsyncWaiters.until(fut, deadline - asyncio.get_running_loop().time()):
                with self._lock:
                    self._waiters.forget(fut)
                    return self._buf.size >= n

    def read(self, n: int, finish: bool = True) -> tuple[np.ndarray, float | None]:
        """n samples and the capture time of the first (None when it was all padding). A reader that
        re-times what it read before sending it (the far end's voice hold inserts and leaves out frames)
        passes `finish=False` and calls `finish` on what actually leaves, so the mark's timeline is the
        sent one."""
        with self._lock:
            take = min(n, self._buf.size)
            out, self._buf = self._buf[:take], self._buf[take:]
            t_first = self._t_first if take else None
            if self._t_first is not None:
                self._t_first = self._t_first + take / self.sample_rate if self._buf.size else None
        if take < n:
            self.underrun_samples += n - take
            out = np.concatenate([out, np.zeros(n - take, dtype=np.float32)])
        return (self.finish(out) if finish else out), t_first

    def finish(self, out: np.ndarray) -> np.ndarray:
        """`on_read` applied to samples on their way out; silence (counted) should it fail."""
        if self._on_read is None:
            return out
        try:
            return self._on_read(out)
        except Exception:
            self.on_read_errors += 1
            return np.zeros(out.size, dtype=np.float32)

    def trim_to(self, seconds: float) -> int:
        """Drop the oldest samples beyond `seconds` of buffer (counted as dropped); returns how many."""
        with self._lock:
            return self._drop_oldest(keep=int(seconds * self.sample_rate))

    def _drop_oldest(self, keep: int) -> int:
        """Drop samples from the front until at most `keep` remain (lock held); returns how many went."""
        excess = self._buf.size - keep
        if excess <= 0:
            return 0
        self._buf = self._buf[excess:]
        self.dropped_samples += excess
        if self._t_first is not None:
            self._t_first += excess / self.sample_rate
        return excess

    @property
    def buffered_s(self) -> float:
        with self._lock:
            return self._buf.size / self.sample_rate


class Worker(Generic[T]):
    """A daemon thread that takes items from a LatestSlot, applies `fn`, and hands the result on.

    Latency recorded per item is end-to-end from capture (`item.t_capture`) to the stage's output, so
    the figure includes time spent waiting; exceptions are logged and the stage keeps running.
    """

    def __init__(self, name: str, inbox: LatestSlot[T], fn: Callable[[T], T],
                 outbox: Callable[[T], None], stats: LatencyStats) -> None:
        self.name = name
        self._inbox, self._fn, self._outbox, self._stats = inbox, fn, outbox, stats
        self._thread = threading.Thread(target=self._run, name=f"evercall-{name}", daemon=True)
        self.errors = 0

    def start(self) -> "Worker[T]":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._inbox.closed:
            item = self._inbox.get(timeout=0.25)
            if item is None:
                continue
            try:
                result = self._fn(item)
            except Exception:  # a filter bug must not end the call
                self.errors += 1
                log.exception("stage %s failed on one item", self.name)
                continue
            self._stats.record(now() - getattr(item, "t_capture", now()))
            self._outbox(result)

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)


class DelayLine(Generic[T]):
    """Releases each item at `item.t_capture + delay()`, so video can wait for the slower voice path.

    The delay is read at release time, so it follows a measured figure. When several items are due at once
    (the consumer or this thread fell behind) only the newest goes out and the rest count as dropped.
    """

    def __init__(self, out: Callable[[T], None], delay: Callable[[], float],
                 on_drop: Callable[[int], None] | None = None, max_items: int = 64,
                 clock: Callable[[], float] = now) -> None:
        self._out, self._delay, self._on_drop = out, delay, on_drop
        self._clock = clock  # the capture clock; a test passes its own to check release times exactly
        self._items: list[T] = []
        self._max = max_items
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="evercall-delay", daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            if len(self._items) > self._max:  # bounded even if the delay were absurd
                del self._items[0]
                if self._on_drop:
                    self._on_drop(1)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if not self._items:
                    self._cond.wait(0.25)
                    continue
                due_at = self._items[0].t_capture + self._delay()  # type: ignore[attr-defined]
                wait = due_at - self._clock()
                if wait > 0:
                    self._cond.wait(min(wait, 0.25))
                    continue
                limit = self._clock() - self._delay()
                due = [i for i in self._items if i.t_capture <= limit]  # type: ignore[attr-defined]
                self._items = self._items[len(due):]
            if len(due) > 1 and self._on_drop:
                self._on_drop(len(due) - 1)
            self._out(due[-1])

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(1.0)
