"""The manifests in examples/, document by document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from goldenimage import paths


def files() -> list[Path]:
    return sorted(paths.EXAMPLES.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
