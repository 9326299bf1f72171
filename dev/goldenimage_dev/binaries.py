"""Finding the control plane binaries: `KUBEBUILDER_ASSETS`, or the project's own build cached
under ~/.cache/goldenimage (built by hack/build-control-plane.sh when asked to)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import paths

NAMES = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd")
BUILD_SCRIPT = paths.HACK / "build-control-plane.sh"


class MissingBinariesError(RuntimeError):
    pass


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    etcd: Path

    @classmethod
    def from_directory(cls, directory: Path) -> Binaries:
        missing = [n for n in NAMES if not os.access(directory / n, os.X_OK)]
        if missing:
            raise MissingBinariesError(f"{directory} lacks {', '.join(missing)}")
        return cls(*(directory / n for n in NAMES))


def find(*, build: bool = False) -> Binaries:
    """The binaries to use; with `build`, run the build script when no cached build exists.

    Raises MissingBinariesError with a message saying how to get them.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        return Binaries.from_directory(Path(assets))
    if not BUILD_SCRIPT.exists():
        raise MissingBinariesError(f"no KUBEBUILDER_ASSETS and no {BUILD_SCRIPT}")
    # The script answers at once from its cache; only a cold cache makes it compile.
    env = dict(os.environ)
    if not build:
        env["GOLDENIMAGE_NO_BUILD"] = "1"
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise MissingBinariesError(
            "control plane binaries are not available: "
            + (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            + f"\nBuild them with `bash {BUILD_SCRIPT.relative_to(paths.REPO_ROOT)}` "
            "or point KUBEBUILDER_ASSETS at envtest binaries."
        )
    return Binaries.from_directory(Path(result.stdout.strip().splitlines()[-1]))
