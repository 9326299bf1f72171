"""Every template rendered from the examples passes `packer validate` and `packer fmt -check`
with a real Packer, with and without a communicator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from goldenimage.packer import inputs
from goldenimage.packer.render import BuildContext, Settings, render_target
from support import components, recipes

pytestmark = pytest.mark.integration

CTX = BuildContext(
    namespace="platform", image="web-base", build="web-base-7", version=7, build_id="web-base-7-1a2b3c4d"
)
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
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"}
    args = [packer, "validate", f"-var=inputs_dir={tmp_path}", f"-var=manifest_path={tmp_path}/m.json", str(path)]
    validate = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    fmt = subprocess.run([packer, "fmt", "-check", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert fmt.returncode == 0, subprocess.run(
        [packer, "fmt", "-diff", str(path)], capture_output=True, text=True
    ).stdout


def test_the_runner_image_pins_the_packer_the_tests_use() -> None:
    import re

    from goldenimage import paths

    dockerfile = (paths.REPO_ROOT / "packer-runner" / "Dockerfile").read_text()
    pinned = re.search(r"ARG PACKER_VERSION=(\d+\.\d+\.\d+)", dockerfile)
    assert pinned is not None
    out = subprocess.run([components.packer(), "version"], capture_output=True, text=True).stdout
    assert f"Packer v{pinned.group(1)}" in out, out
