"""Where the project's own files are when it runs from a checkout (local runs, tests, generators)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPO_ROOT / "crds"
EXAMPLES = REPO_ROOT / "examples"
