"""What the integration and end-to-end tiers need, and what to do when it is missing: in CI
(CI=true) a missing component fails the run with a clear message; locally the test skips."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import NoReturn

import pytest

from goldenimage import paths

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str, how: str) -> NoReturn:
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"CI needs every component. {message}", pytrace=False)
    pytest.skip(message)


def packer() -> str:
    path = os.environ.get("PACKER") or shutil.which("packer")
    if not path:
        missing("packer", "install it (`apt-get install packer`) or run ./hack/test.sh, which does")
    return path


@functools.cache
def helm() -> str:
    """helm from HELM, the project's cached build (hack/build-helm.sh), or PATH."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    script = paths.REPO_ROOT / "hack" / "build-helm.sh"
    found = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "GOLDENIMAGE_NO_BUILD": "1"},
        timeout=60,
    )
    if found.returncode == 0:
        return found.stdout.strip().splitlines()[-1]
    on_path = shutil.which("helm")
    if not on_path:
        missing("helm", "build it with `bash hack/build-helm.sh` (./hack/test.sh does)")
    return on_path
