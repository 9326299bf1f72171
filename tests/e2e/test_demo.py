"""The README's run command tells the whole story and leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from goldenimage_dev.binaries import MissingBinariesError, find
from goldenimage_dev.stack import BIN
from support import components, procs

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1560)
def test_demo_builds_promotes_and_rolls_back(tmp_path: Path) -> None:
    components.packer()
    try:
        find(build=False)
    except MissingBinariesError as exc:
        components.missing("the control plane binaries", str(exc))
    directory = tmp_path / "demo"
    demo = subprocess.Popen(
        [str(BIN / "goldenimage-dev"), "demo", "--no-wait", f"--dir={directory}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = demo.communicate(timeout=1500)
    finally:
        if demo.poll() is None:  # timed out: the demo and everything in its session go
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate()
        # What the demo started in sessions of its own (the control plane, moto, the operator)
        # names its directory; on failure it goes too, and on success there must be none.
        left = procs.running_with(str(directory))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert demo.returncode == 0, out[-3000:] + err[-3000:]
    for line in (
        "ImageBuild web-base-1: Ready=True (Validated",
        "ImageChannel web-candidate -> version 1 (LatestValidated",
        "ImageChannel web-prod -> version 1 (UpstreamChannel",
        "ImageChannel web-prod -> version 2 (UpstreamChannel",
        "kubectl golden rollback web-prod: imagechannel/web-prod: spec.version set to 1",
        "ImageChannel web-prod -> version 1 (Rollback",
        "(version 1 again)",
        "ImageChannel web-gcp-candidate -> version 2 (LatestValidated",
        "ImageChannel web-azure-candidate -> version 2 (LatestValidated",
        "image family web-base-candidate resolves to web-base-candidate-web-base-gcp-1",
        "kubectl golden rollback web-gcp-candidate: imagechannel/web-gcp-candidate: spec.version set to 1",
        "gallery image web-base's latest is 1.0.1 (version 1 again)",
        "ImageChannel web-gcp-candidate -> version 2 (Revoked",
        "gallery image web-base's latest is 2.0.1 (version 1 is revoked)",
        "imagechannel.goldenimage.io/web-prod",
    ):
        assert line in out, f"missing {line!r} in:\n{out[-3000:]}"
    assert (directory / "kubeconfig").exists()
    assert left == []
