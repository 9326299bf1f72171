from __future__ import annotations

import os
import subprocess
import sys

import pytest

from goldenimage import paths
from goldenimage.packer.fingerprint import fingerprint
from support import recipes

BASE = """
targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}]
provisioners: [{shell: {inline: [date]}}]
tags: {Role: web}
"""


def fp(
    text: str = BASE,
    *,
    sources: dict[str, str] | None = None,
    inputs: dict[str, str] | None = None,
    runner: str = "r:1",
) -> str:
    return fingerprint(recipes.spec(text), sources=sources or {}, inputs=inputs or {}, runner=runner)


@pytest.mark.parametrize("seed", ["0", "1", "4242"])
def test_stable_across_interpreters(seed: str) -> None:
    """Another interpreter, with other string hashes (so other set and dict orders where they
    depend on hashing), computes the same fingerprint."""
    code = (
        "import sys; from goldenimage.packer.fingerprint import fingerprint; from support import recipes; "
        "print(fingerprint(recipes.spec(sys.stdin.read()), sources={}, inputs={}, runner='r:1'))"
    )
    path = os.pathsep.join([str(paths.REPO_ROOT / "tests"), str(paths.REPO_ROOT / "operator")])
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=BASE,
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == fp()


def test_well_formed_and_independent_of_how_the_spec_is_written() -> None:
    assert fp().startswith("sha256:") and len(fp()) == 71
    reordered = """
tags: {Role: web}
provisioners:
  - shell:
      inline: [date]
targets:
  - aws: {source: {amiId: ami-0123456789abcdef0}, region: eu-west-1}
    name: aws-eu
"""
    assert fp(reordered) == fp()


def test_fields_that_do_not_shape_the_image_leave_it_alone() -> None:
    changed = (
        BASE
        + """
credentials: {aws: {serviceAccountName: other}}
validation: {checks: [{tcp: {port: 22}}]}
rebuild: {schedule: "0 3 * * 0"}
retention: {keepVersions: 3, deletionPolicy: Delete}
build: {timeout: 3h, maxAttempts: 5}
revocations: [{version: 1, reason: CVE-2026-1234}]
"""
    )
    assert fp(changed) == fp()


def test_writing_a_default_explicitly_is_not_a_change() -> None:
    assert fp(BASE + "generalize: true\n") == fp()
    explicit = BASE.replace("region: eu-west-1,", "region: eu-west-1, instanceType: t3.medium,")
    assert fp(explicit) == fp()


def test_everything_that_shapes_the_image_changes_it() -> None:
    base = fp()
    assert fp(BASE.replace("Role: web", "Role: api")) != base
    assert fp(BASE.replace("[date]", "[uptime]")) != base
    assert fp(BASE + "generalize: false\n") != base
    assert fp(sources={"aws-eu": "ami-0123456789abcdef1"}) != base
    assert fp(inputs={"web-baseline/baseline.yml": "sha256:" + "0" * 64}) != base
    assert fp(runner="r:2") != base
