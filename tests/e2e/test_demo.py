"""The README's run command tells the whole story and leaves nothing running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goldenimage.local.binaries import MissingBinariesError, find
from support import components, procs

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(960)
def test_demo_builds_promotes_and_rolls_back(tmp_path: Path) -> None:
    components.packer()
    try:
        find(build=False)
    except MissingBinariesError as exc:
        components.missing("the control plane binaries", str(exc))
    directory = tmp_path / "demo"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "goldenimage"), "demo", "--no-wait", f"--dir={directory}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for line in (
        "ImageBuild web-base-1: Ready=True (Validated",
        "ImageChannel web-candidate -> version 1 (LatestValidated",
        "ImageChannel web-prod -> version 1 (UpstreamChannel",
        "ImageChannel web-prod -> version 2 (UpstreamChannel",
        "kubectl golden rollback web-prod: imagechannel/web-prod: spec.version set to 1",
        "ImageChannel web-prod -> version 1 (Rollback",
        "(version 1 again)",
        "imagechannel.goldenimage.io/web-prod",
    ):
        assert line in out, f"missing {line!r} in:\n{out[-3000:]}"
    assert (directory / "kubeconfig").exists()
    assert procs.running_with(str(directory)) == []
