"""Shared fixtures: an isolated EVERCALL_HOME, the demo material built once per run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def evercall_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test run gets its own store folder, never the user's."""
    home = tmp_path_factory.mktemp("evercall-home")
    os.environ["EVERCALL_HOME"] = str(home)
    os.environ.setdefault("EVERCALL_SCRYPT_N", str(2**10))
    return home


@pytest.fixture(scope="session")
def demo(evercall_home: Path):
    """The built-in demo persona and operator clip, built once for the whole run, where `--demo` finds it."""
    from calls.demo import demo_assets

    return demo_assets(evercall_home / "demo")


@pytest.fixture(scope="session")
def demo_persona(demo):
    from engine.persona import load_persona_dir

    return load_persona_dir(demo.persona_dir, name="demo")
