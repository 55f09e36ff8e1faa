"""Native stderr filtering (calls/quiet.py): the noise goes, our lines stay, and a crash still says where."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(body: str) -> subprocess.CompletedProcess:
    code = "from calls.quiet import quiet_native_logs\nquiet_native_logs()\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_native_noise_is_dropped_and_other_lines_kept() -> None:
    done = _run("""
        import os
        os.write(2, b"I0000 00:00:1 123 gl_context.cc:357] GL version: 3.2\\n")
        os.write(2, b"a line the operator must see\\n")
    """)
    assert done.returncode == 0
    assert "a line the operator must see" in done.stderr and "gl_context" not in done.stderr


def test_a_segfault_under_the_filter_still_prints_where_it_happened() -> None:
    done = _run("""
        import faulthandler

        def crash_in_native_code():
            faulthandler._sigsegv()

        crash_in_native_code()
    """)
    assert done.returncode != 0
    assert "Segmentation fault" in done.stderr and "crash_in_native_code" in done.stderr, done.stderr
