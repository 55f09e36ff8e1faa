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
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

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
        raise unittest.SkipTest(f"Chromium not found at {CHROMIUM} (install it with ./install.sh --test, or set EVERCALL_CHROMIUM)")
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


# -- Chromium driven over the DevTools protocol: device emulation, permissions, taps, screenshots ---------

PHONE_UPRIGHT = {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True}
PHONE_LANDSCAPE = {"width": 844, "height": 390, "deviceScaleFactor": 3, "mobile": True}
TABLET = {"width": 820, "height": 1180, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}


class DevToolsPage:
    """One tab of a Chromium started with --remote-debugging-port, spoken to over its WebSocket."""

    def __init__(self, ws, session_id: str) -> None:
        self._ws, self._session = ws, session_id
        self._next = 0

    async def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        self._next += 1
        msg_id = self._next
        message = {"id": msg_id, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self._session
        await self._ws.send_json(message)
        while True:
            reply = await self._ws.receive_json()
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                      "awaitPromise": True})
        return result.get("result", {}).get("value")

    async def set_device(self, device: dict) -> None:
        """Emulate a screen (CSS px, device pixel ratio, mobile) and touch input."""
        await self.send("Emulation.setDeviceMetricsOverride", {
            **device, "screenWidth": device["width"], "screenHeight": device["height"],
            "screenOrientation": {"type": "portraitPrimary" if device["height"] >= device["width"]
                                  else "landscapePrimary", "angle": 0 if device["height"] >= device["width"] else 90}})
        await self.send("Emulation.setTouchEmulationEnabled", {"enabled": bool(device.get("mobile"))})

    async def tap(self, selector: str) -> None:
        """A real tap (a user gesture, as autoplay and getUserMedia rules count it) on the element's centre."""
        box = await self.evaluate(f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                                  " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                         "clickCount": 1})

    async def screenshot(self) -> np.ndarray:
        """The tab as the user sees it, in device pixels (BGR)."""
        import base64

        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        return cv2.imdecode(np.frombuffer(base64.b64decode(shot["data"]), np.uint8), cv2.IMREAD_COLOR)


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 20.0) -> int:
    import time

    deadline = time.monotonic() + timeout
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline and proc.poll() is None:
        if marker.is_file():
            lines = marker.read_text().split()
            if lines:
                return int(lines[0])
        time.sleep(0.05)
    raise RuntimeError("Chromium did not open its DevTools port")


from contextlib import asynccontextmanager  # noqa: E402  (kept with the DevTools helpers it serves)


@asynccontextmanager
async def devtools_page(url: str, device: dict, video: Path | None = None, audio: Path | None = None,
                        allow: tuple[str, ...] | None = None, autoplay_without_tap: bool = False,
                        extra_args: tuple[str, ...] = (), language: str | None = None):
    """Chromium (headless) showing `url` on an emulated `device`; yields (DevToolsPage, Browser).

    allow: None grants camera and microphone without asking (the fake permission UI); otherwise the
    permissions granted, any of "camera", "microphone" (the rest are denied, as a tap on "Block").
    autoplay_without_tap: False keeps the browser's own autoplay rule (sound needs a tap, as on a phone).
    language: the browser's preferred languages (Accept-Language form, e.g. "zh-CN,zh"), else Chromium's own.
    """
    import asyncio

    import aiohttp

    exe = require_chromium()
    work = Path(tempfile.mkdtemp(prefix="evercall-chromium-"))
    profile = work / "profile"
    media = [f for f in MEDIA_FLAGS if autoplay_without_tap or not f.startswith("--autoplay-policy")]
    if allow is not None:
        media = [f for f in media if f != "--use-fake-ui-for-media-stream"]
    args = [str(exe), *[f for f in BASE_FLAGS if not f.startswith("--window-size")],
            f"--window-size={device['width']},{device['height']}", *media, f"--user-data-dir={profile}",
            "--remote-debugging-port=0", "--remote-allow-origins=*"]
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={Path(video).resolve()}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={Path(audio).resolve()}")
    args += [*extra_args, "about:blank"]
    log_path = work / "chromium.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    session = aiohttp.ClientSession()
    try:
        port = await asyncio.to_thread(_devtools_port, profile, proc)
        async with session.get(f"http://127.0.0.1:{port}/json/version") as resp:
            ws_url = (await resp.json())["webSocketDebuggerUrl"]
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            browser_side = DevToolsPage(ws, "")
            target = await browser_side.send("Target.createTarget", {"url": "about:blank"}, browser=True)
            attached = await browser_side.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                                          "flatten": True}, browser=True)
            page = DevToolsPage(ws, attached["sessionId"])
            page._next = 1000
            if allow is not None:
                from urllib.parse import urlsplit

                parts = urlsplit(url)
                origin = f"{parts.scheme}://{parts.netloc}"
                for name in ("camera", "microphone"):
                    await browser_side.send("Browser.setPermission", {
                        "permission": {"name": name}, "setting": "granted" if name in allow else "denied",
                        "origin": origin}, browser=True)
            await page.set_device(device)
            if language:
                agent = (await browser_side.send("Browser.getVersion", browser=True))["userAgent"]
                await page.send("Emulation.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": language})
            await page.send("Page.enable")
            await page.send("Page.navigate", {"url": url})
            yield page, Browser(proc, log_path)
    finally:
        await session.close()
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
