"""Headless Chromium as a real far end: a subprocess on a URL, no driver.

The join page posts its own WebRTC figures back to the server, so a test only has to start the browser,
wait on the server's state and kill the browser. The flags are the ones DESIGN.md found to work with only
a loopback interface. Chromium spawns a zygote, a renderer and a GPU/utility process; it is started in its
own process group so that the whole group (and nothing else) is ended when the test is done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("EVERCALL_CHROMIUM", "/usr/bin/chromium"))

BASE_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--mute-audio", "--window-size=800,600",
)
MEDIA_FLAGS = (
    "--use-fake-device-for-media-stream=fps=30", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # Headless tabs count as hidden: without these Chromium throttles timers and may pause the video.
    "--autoplay-policy=no-user-gesture-required", "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
)


def require_chromium() -> Path:
    """The browser binary, or skip: CI installs it (install.sh --test), a bare checkout may not have it."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM} (install it with ./install.sh --test, or set EVERCALL_CHROMIUM)")
    return CHROMIUM


class Browser:
    """A running Chromium: its process and where its log goes (for failure messages)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _stop(proc: subprocess.Popen) -> None:
    """End Chromium's own process group: SIGTERM, then SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)  # the group id is the id of the process we started (start_new_session)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            # The leader is gone; children of the same group may still be exiting: make sure of them too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def chromium(url: str, video: Path | None = None, audio: Path | None = None,
             extra_args: tuple[str, ...] = ()) -> Iterator[Browser]:
    """Chromium headless on `url` with a fake camera and microphone (optionally fed from files).

    Always killed on exit, and its profile folder removed, whatever the test did.
    """
    exe = require_chromium()
    work = Path(tempfile.mkdtemp(prefix="evercall-chromium-"))
    args = [str(exe), *BASE_FLAGS, *MEDIA_FLAGS, f"--user-data-dir={work / 'profile'}"]
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={Path(video).resolve()}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={Path(audio).resolve()}")
    args += [*extra_args, url]
    log_path = work / "chromium.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield Browser(proc, log_path)
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def run_once(url: str, *flags: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """A one-shot headless run (`--dump-dom`, `--screenshot=...`) for pages that need no WebRTC."""
    exe = require_chromium()
    work = Path(tempfile.mkdtemp(prefix="evercall-chromium-"))
    try:
        proc = subprocess.Popen([str(exe), *BASE_FLAGS, f"--user-data-dir={work / 'profile'}", *flags, url],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            _stop(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_y4m(path: Path, image_bgr: np.ndarray, seconds: float = 2.0, fps: int = 30,
              size: tuple[int, int] = (320, 240)) -> Path:
    """A short raw I420 clip of one still with a slight drift, for --use-file-for-fake-video-capture.

    The drift keeps every frame a little different, as a real camera would; raw y4m is large, so keep it small.
    """
    w, h = size
    scale = max(w / image_bgr.shape[1], h / image_bgr.shape[0]) * 1.06  # a margin to drift within
    big = cv2.resize(image_bgr, (round(image_bgr.shape[1] * scale), round(image_bgr.shape[0] * scale)),
                     interpolation=cv2.INTER_AREA)
    cy, cx = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    n = max(1, round(seconds * fps))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            dx = round(4 * np.sin(2 * np.pi * i / n))
            crop = big[cy:cy + h, cx + dx:cx + dx + w]
            f.write(b"FRAME\n" + cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2YUV_I420).tobytes())
    return path
