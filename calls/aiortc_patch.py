"""One name in one aiortc module, rebound to evercall's replacement while some settings are in force.

aiortc builds its jitter buffers and encoders by looking a name up in the module that uses it, each time
it needs one. Rebinding that one name is the narrowest change that tunes them: nothing else in aiortc is
touched, objects built earlier keep what they were built with, and `restore` puts aiortc's own back.
calls/transport.py (receive side) and calls/encoders.py (send side) each hold one `NamePatch`.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Callable, Generic, Optional, TypeVar

log = logging.getLogger(__name__)
S = TypeVar("S")


class NamePatch(Generic[S]):
    """`module.name` is `replacement` while settings are in force, else aiortc's `original`."""

    def __init__(self, module: ModuleType, name: str, original: Any, replacement: Any,
                 usable: Callable[[], bool], when_unusable: str) -> None:
        self.module, self.name = module, name
        self.original, self.replacement = original, replacement
        self._usable = usable  # does this aiortc still have what the replacement relies on?
        self._when_unusable = when_unusable
        self._settings: Optional[S] = None

    def apply(self, settings: S) -> Optional[S]:
        """Rebind the name (idempotent) and return `settings`; None, with a warning, if aiortc has changed."""
        if getattr(self.module, self.name, None) not in (self.original, self.replacement) or not self._usable():
            log.warning(self._when_unusable)
            return None
        self._settings = settings
        setattr(self.module, self.name, self.replacement)
        return settings

    def restore(self) -> None:
        """aiortc's own again, for whatever is built from now on (idempotent)."""
        self._settings = None
        if getattr(self.module, self.name, None) is self.replacement:
            setattr(self.module, self.name, self.original)

    @property
    def active(self) -> bool:
        return getattr(self.module, self.name, None) is self.replacement

    def current(self) -> Optional[S]:
        """The settings in force, or None while aiortc's own is in place."""
        return self._settings if self.active else None

    def settings_or(self, default: S) -> S:
        """What a replacement object should use now: the settings in force, else `default`."""
        return self._settings if self._settings is not None else default
