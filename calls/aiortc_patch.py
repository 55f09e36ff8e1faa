"""One name in one aiortc module, rebound to evercall's replacement while some settings are in force.

aiortc builds its jitter buffers and encoders by looking a name up in the module that uses it, each time
it needs one. Rebinding that one name is the narrowest change that tunes them: nothing else in aiortc is
touched, objects built earlier keep what they were built with, and `restore` puts aiortc's own back.
calls/transport.py (receive side) and calls/encoders.py (send side) each hold one `NamePatch`.

Each replacement relies on aiortc internals (private attributes, constructor and method signatures) that a
new aiortc may rename. pyproject.toml pins the aiortc the patches were checked on; beyond that, every patch
names what it relies on in a `requires` function (built from `lacks` and `lacks_parameters` below), and
`apply` leaves aiortc's own in place, with one warning naming what is gone, when any of it is missing: the
call then runs on stock aiortc, slower to deliver but correct.
"""

from __future__ import annotations

import inspect
import logging
from types import ModuleType
from typing import Any, Callable, Generic, Optional, TypeVar

log = logging.getLogger(__name__)
S = TypeVar("S")


def lacks(owner: Any, *names: str) -> list[str]:
    """The `names` that `owner` (a module, class or instance) does not have, as 'Owner.name'."""
    label = getattr(owner, "__name__", type(owner).__name__)
    return [f"{label}.{name}" for name in names if not hasattr(owner, name)]


def lacks_parameters(func: Any, *params: str) -> list[str]:
    """The parameters `func` no longer takes by these names, as 'func(name)' (all of them if not callable)."""
    label = getattr(func, "__qualname__", repr(func))
    try:
        have = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return [f"{label}({name})" for name in params]
    return [f"{label}({name})" for name in params if name not in have]


class NamePatch(Generic[S]):
    """`module.name` is `replacement` while settings are in force, else aiortc's `original`.

    requires() lists what the replacement relies on and this aiortc lacks (empty: all there); it runs at
    each `apply`, so a patch is never put in place over an aiortc it does not fit.
    """

    def __init__(self, module: ModuleType, name: str, original: Any, replacement: Any,
                 requires: Callable[[], list[str]], when_unusable: str) -> None:
        self.module, self.name = module, name
        self.original, self.replacement = original, replacement
        self._requires = requires
        self._when_unusable = when_unusable
        self._warned = False
        self._settings: Optional[S] = None

    def missing(self) -> list[str]:
        """What the replacement relies on that this aiortc lacks (empty when the patch fits)."""
        problems = []
        if getattr(self.module, self.name, None) not in (self.original, self.replacement):
            problems.append(f"{self.module.__name__}.{self.name} (not aiortc's own)")
        try:
            problems += self._requires()
        except Exception as exc:  # a probe that cannot even run says the same: this aiortc is not ours
            problems.append(f"{type(exc).__name__}: {exc}")
        return problems

    def apply(self, settings: S) -> Optional[S]:
        """Rebind the name (idempotent) and return `settings`; None, after one warning, if aiortc has changed."""
        problems = self.missing()
        if problems:
            self.restore()
            if not self._warned:
                self._warned = True
                log.warning("%s; missing: %s", self._when_unusable, ", ".join(problems))
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
