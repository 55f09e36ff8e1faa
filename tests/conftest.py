"""Shared fixtures: an isolated EVERCALL_HOME, the demo material built once per run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Tests that use these fixtures are slow whatever their marks say: `demo` builds the demo persona and its
# operator clip (about 20 s, once a run). `pytest -m "not slow"` leaves them out.
SLOW_FIXTURES = {"demo"}
# Modules whose tests mostly take seconds each (speech synthesis and speaker embeddings, face meshes over
# many frames, video encoding for the watermark, fuzzing): measured with `pytest --durations=0`. A module's
# quick tests can opt back in by moving to a fast module; a new heavy module belongs here or marks itself.
SLOW_MODULES = {"test_voice", "test_voice_rvc", "test_voice_mark", "test_watermark", "test_face_portrait",
                "test_face_swap", "test_face_stability", "test_face3d", "test_gpu_path", "test_fuzz"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
async def server():
    """The real relay server around a passthrough pipeline on a free loopback port: (state, base URL)."""
    from benchmarks.latency import passthrough_pipeline
    from benchmarks.relay import serve_on_loopback
    from calls.server import CallConfig, CallState

    pipeline = passthrough_pipeline()
    state = CallState(pipeline=pipeline, config=CallConfig(persona_name="test"))
    runner, base = await serve_on_loopback(state)
    yield state, base
    await runner.cleanup()
    pipeline.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh private persona store (fast key derivation) in this test's own folder."""
    from tests.stores import PASS

    monkeypatch.setenv("EVERCALL_PASSPHRASE", PASS)
    monkeypatch.setenv("EVERCALL_SCRYPT_N", "16")
    monkeypatch.setenv("EVERCALL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
