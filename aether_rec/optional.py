"""Optional dependencies (pyarrow, duckdb, dask, fsspec, protobuf): imported only when a
feature needs them, with a one-line error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from aether_rec.errors import AetherError


class MissingDependencyError(AetherError):
    """An optional package a feature needs is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{feature} needs {top}, which is not installed: pip install 'aether-rec[{extra}]'"
        ) from None
