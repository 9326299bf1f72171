"""Where the repository's files are: the dev distribution only ever runs from a checkout."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPO_ROOT / "crds"
EXAMPLES = REPO_ROOT / "examples"
HACK = REPO_ROOT / "hack"
