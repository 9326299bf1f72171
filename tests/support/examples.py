"""The manifests in examples/, document by document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DIRECTORY = Path(__file__).resolve().parents[2] / "examples"


def files() -> list[Path]:
    return sorted(DIRECTORY.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
