"""The layers hold: engine <- filters <- calls <- benchmarks <- tests, checked by import-linter as CI does, and
a deliberately backwards import (the engine reaching up into calls) breaks the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "filters", "calls", "benchmarks", "tests")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def _copy_tree(dest: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "results", "*.png"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def test_the_tree_keeps_its_layers() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_a_backwards_import_breaks_the_build(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    upward = tmp_path / "engine" / "reaches_up.py"
    upward.write_text('"""A deliberate layer violation."""\n\nfrom calls.assembly import CallChoices  # noqa: F401\n')
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "engine is not allowed to import calls" in result.stdout
    assert "engine.reaches_up -> calls.assembly" in result.stdout
