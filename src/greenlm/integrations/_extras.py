"""Import an optional dependency, or raise the error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from greenlm.errors import MissingExtraError


def require(module: str, *, feature: str, extra: str, package: str) -> ModuleType:
    """``importlib.import_module(module)``, translating ImportError into MissingExtraError."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(feature, extra, package) from e
