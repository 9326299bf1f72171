"""Every module of the package imports (catches a wrong import in code no other test reaches)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import goldenimage
from goldenimage import paths

MODULES = [m.name for m in pkgutil.walk_packages(goldenimage.__path__, "goldenimage.")]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_the_stdlib_operator_module_is_not_shadowed() -> None:
    """The package lives in operator/: with the repository root first on the path, as when a
    command runs from a checkout, `import operator` must still find the standard library's.
    (In this process pytest imported it long ago, so only a fresh interpreter can tell.)"""
    path = os.pathsep.join([str(paths.REPO_ROOT), str(paths.REPO_ROOT / "operator")])
    result = subprocess.run(
        [sys.executable, "-c", "import operator, goldenimage; operator.itemgetter"],
        cwd=paths.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
