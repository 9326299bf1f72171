"""Snapshot files under tests/unit/snapshots: compared as text; UPDATE_SNAPSHOTS=1 rewrites them."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parents[1] / "unit" / "snapshots"


def check(name: str, text: str) -> None:
    path = DIRECTORY / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(f"no snapshot {path.name}; run with UPDATE_SNAPSHOTS=1 to create it")
    expected = path.read_text()
    if expected != text:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "snapshot", "now", lineterm=""))
        raise AssertionError(f"{path.name} differs (UPDATE_SNAPSHOTS=1 to accept):\n{diff[:4000]}")
