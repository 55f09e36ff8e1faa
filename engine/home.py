"""Where evercall keeps its data: `EVERCALL_HOME`, else `~/.local/share/evercall`."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "EVERCALL_HOME"


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "evercall"


def audit_log():
    """The store's audit log, for calls and renders to record themselves in."""
    from engine.audit import AuditLog

    return AuditLog(default_home() / "audit.log")
