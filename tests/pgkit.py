"""The PostgreSQL test helpers of `tests/storage/pg.py` (`pg.pg_schema()`: a schema of the test
database of its own, dropped afterwards) for tests in other folders: `from pgkit import pg`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load(name: str) -> ModuleType:
    """A module of tests/storage, loaded once under its own name (tests/storage is not a
    package, and it is on sys.path only once one of its tests has been collected)."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "storage" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


pg = _load("pg")
