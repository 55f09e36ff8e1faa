"""Per-stage latency figures: p50/p95/max over a rolling window, and counts of dropped items.

Stages record from worker threads and the server reads snapshots from the event loop, so every
method is guarded by a lock; the window is bounded so an hour-long call uses constant memory.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

WINDOW = 600  # about 20 s of video at 30 fps


class LatencyStats:
    """Rolling latency samples in milliseconds for one stage, plus processed/dropped counters."""

    def __init__(self, window: int = WINDOW) -> None:
        self._ms: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.processed = 0
        self.dropped = 0

    def record(self, seconds: float) -> None:
        with self._lock:
            self._ms.append(seconds * 1000.0)
            self.processed += 1

    def drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def summary(self) -> dict[str, float | int]:
        with self._lock:
            values = np.fromiter(self._ms, dtype=np.float64)
            processed, dropped = self.processed, self.dropped
        if values.size == 0:
            return {"count": processed, "dropped": dropped, "p50_ms": None, "p95_ms": None, "max_ms": None}
        return {
            "count": processed,
            "dropped": dropped,
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2),
            "max_ms": round(float(values.max()), 2),
        }


class Metrics:
    """A named set of LatencyStats, created on first use."""

    def __init__(self) -> None:
        self._stages: dict[str, LatencyStats] = {}
        self._lock = threading.Lock()

    def stage(self, name: str) -> LatencyStats:
        with self._lock:
            if name not in self._stages:
                self._stages[name] = LatencyStats()
            return self._stages[name]

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        with self._lock:
            stages = dict(self._stages)
        return {name: stats.summary() for name, stats in stages.items()}
