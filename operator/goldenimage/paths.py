"""Where the project's own files are when it runs from a checkout (local runs, tests, generators)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPO_ROOT / "crds"
CHART = REPO_ROOT / "charts" / "goldenimage-operator"
# Every directory that holds a copy of the generated CRDs.
CRD_DIRECTORIES = (CRDS, CHART / "crds")
EXAMPLES = REPO_ROOT / "examples"
