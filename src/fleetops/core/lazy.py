"""Package attributes imported on first use (PEP 562).

Capability packages re-export their public names but load the submodule behind a name
only when it is used, so ``import fleetops.<capability>`` (as the CLI does for every
command) costs nothing until then.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, home: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each name in ``home`` from its submodule."""

    def module_getattr(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home[name]), name)

    return module_getattr
