"""Waiting for an effect instead of sleeping a fixed time: a busy machine makes a test slower, never red."""

from __future__ import annotations

import asyncio
import time
from typing import Callable


def until(check: Callable[[], object], timeout: float = 10.0, every: float = 0.005) -> bool:
    """Poll `check()` (another thread's effect) until it is true or `timeout` s pass; its last verdict."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


async def until_async(check: Callable[[], object], timeout: float = 5.0, every: float = 0.05) -> bool:
    """`until` on an event loop: the loop keeps running while the test waits."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(every)
    return True
