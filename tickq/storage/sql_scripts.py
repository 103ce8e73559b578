"""The numbered schema scripts of the SQL stores, `sql/<dialect>/NNNN_<what>.sql`: each store
applies the ones newer than its schema's version, in order."""

from __future__ import annotations

from importlib import resources
from typing import Literal


def numbered_scripts(dialect: Literal["sqlite", "postgres"]) -> list[tuple[int, str]]:
    """(number, text) of each script of `dialect`, in order."""
    folder = resources.files("tickq.storage") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text()))
    return sorted(found)
