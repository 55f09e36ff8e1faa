"""Keeping the terminal for our own lines: MediaPipe's native (absl/glog) start-up chatter is dropped.

Those messages are written by C++ straight to file descriptor 2 before any logging setup can reach them,
so the CLI routes fd 2 through a pipe and a thread that forwards every line except the known noise.
A crash must still say where it happened: a dying process takes the forwarding thread with it, so the
traceback `faulthandler` writes on SIGSEGV/SIGABRT/SIGBUS/SIGFPE goes to a copy of the real stderr instead.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import re
import sys
import threading
import warnings

NOISE = re.compile(rb"^(?:[IWE]0000 |INFO: Created TensorFlow Lite|WARNING: All log messages before absl)")


def quiet_native_logs() -> None:
    """Filter native noise out of stderr for the rest of the process (idempotent)."""
    if getattr(quiet_native_logs, "_on", False):
        return
    quiet_native_logs._on = True  # type: ignore[attr-defined]
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    sys.stderr.flush()
    real = os.dup(2)
    # Kept on the module: faulthandler writes to the descriptor of a file object it does not own.
    quiet_native_logs._crash_file = open(real, "w", closefd=False)  # type: ignore[attr-defined]
    faulthandler.enable(file=quiet_native_logs._crash_file, all_threads=True)  # type: ignore[attr-defined]
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not NOISE.match(line):
                    os.write(real, line)

    thread = threading.Thread(target=pump, name="evercall-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the pump sees EOF and drains
        thread.join(1.0)

    atexit.register(restore)
