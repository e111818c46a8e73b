"""Package attributes imported on first use (PEP 562), so that importing a package costs only
what its importer touches: the CLI's start-up must not load validation, cryptography or YAML
for a `get`.

Invariant: an attribute resolves to exactly the object its home module defines (it is cached
in the package's namespace after the first lookup); a name with no home is an AttributeError,
as for any module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `homes` maps each lazy name to its module's
    absolute name."""
    namespace = importlib.import_module(package).__dict__

    def lookup(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return lookup
