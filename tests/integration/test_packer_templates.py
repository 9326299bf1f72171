"""Every template rendered from the examples passes `packer validate` and `packer fmt -check`
with a real Packer, with and without a communicator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from goldenimage import paths
from goldenimage.packer import inputs
from goldenimage.packer.render import Settings, render_target
from support import components, recipes
from support.recipes import CTX

pytestmark = pytest.mark.integration

CASES = [
    (image, target, communicator)
    for image in recipes.example_images()
    for target in image.spec.targets
    for communicator in ("ssh", "none")
]


@pytest.mark.parametrize(
    ("image", "target", "communicator"),
    CASES,
    ids=lambda x: x if isinstance(x, str) else getattr(x, "name", None) or x.metadata.name,
)
def test_packer_accepts_the_template(image, target, communicator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    packer = components.packer()
    for item in inputs.files(image.spec):
        (tmp_path / item.name).write_text("- hosts: all\n  tasks: []\n")
    source = "ami-0a1b2c3d4e5f60718" if target.aws else None
    path = tmp_path / "t.pkr.hcl"
    path.write_text(render_target(image.spec, target, CTX, source=source, settings=Settings(communicator=communicator)))
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = [packer, "validate", f"-var=inputs_dir={tmp_path}", f"-var=manifest_path={tmp_path}/m.json", str(path)]
    validate = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    fmt = subprocess.run([packer, "fmt", "-check", str(path)], capture_output=True, text=True, env=env, timeout=60)
    if fmt.returncode != 0:
        diff = subprocess.run([packer, "fmt", "-diff", str(path)], capture_output=True, text=True, env=env, timeout=60)
        raise AssertionError(f"packer fmt would change the template:\n{diff.stdout}")


def test_the_runner_image_pins_the_packer_the_tests_use() -> None:
    dockerfile = (paths.REPO_ROOT / "packer-runner" / "Dockerfile").read_text()
    pinned = re.search(r"ARG PACKER_VERSION=(\d+\.\d+\.\d+)", dockerfile)
    assert pinned is not None
    out = subprocess.run([components.packer(), "version"], capture_output=True, text=True, timeout=60).stdout
    assert f"Packer v{pinned.group(1)}" in out, out
