"""The runner with a real Packer (null builder, no cloud): results, exit codes, secrets kept out
of its output, and SIGTERM forwarded so Packer stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goldenimage.api.result import decode
from goldenimage_dev import processes
from support import components, polling, recipes

pytestmark = pytest.mark.integration

RUNNER = [sys.executable, "-m", "goldenimage.runner.main"]
SECRET = "s3cret-token-value"
# In the environment of the runner and, inherited, of Packer and everything it starts (even in
# sessions of their own): how a test finds them all.
TAG = "GOLDENIMAGE_TEST_RUN"


def template(provisioner: str) -> str:
    return f"""
variable "build_id" {{
  type = string
}}
variable "manifest_path" {{
  type = string
}}
variable "token" {{
  type      = string
  sensitive = true
  default   = ""
}}
source "null" "x" {{
  communicator = "none"
}}
build {{
  sources = ["source.null.x"]
  provisioner "shell-local" {{
    inline = [{provisioner}]
  }}
  post-processor "manifest" {{
    output = var.manifest_path
  }}
}}
"""


def build_command(tmp_path: Path, text: str, *extra: str) -> list[str]:
    """The runner's command line to build the template `text` with its files under tmp_path."""
    packer = components.packer()
    (tmp_path / "inputs").mkdir(exist_ok=True)
    (tmp_path / "inputs" / "main.pkr.hcl").write_text(text)
    (tmp_path / "inputs" / "recipe.json").write_text(json.dumps({"targets": [recipes.AWS_TARGET]}))
    return [
        *RUNNER,
        "build",
        f"--template={tmp_path}/inputs/main.pkr.hcl",
        f"--inputs={tmp_path}/inputs",
        f"--work-dir={tmp_path}/work",
        f"--result={tmp_path}/result",
        "--user-template",
        f"--target={recipes.AWS_TARGET['name']}",
        "--var=build_id=b-1",
        f"--packer={packer}",
        *extra,
    ]


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], **popen: Any) -> Iterator[tuple[subprocess.Popen[Any], str]]:
    """The runner started with a tag of its own; whatever still carries the tag afterwards is killed."""
    tag = uuid.uuid4().hex
    process = subprocess.Popen(argv, env={**os.environ, **env, TAG: tag}, **popen)
    try:
        yield process, tag
    finally:
        processes.kill_tagged(TAG, tag)
        process.wait(timeout=10)


def run(
    tmp_path: Path, text: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, object]]:
    argv = build_command(tmp_path, text, *extra)
    with started(argv, env or {}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as (process, _):
        output, _ = process.communicate(timeout=120)
    return process.returncode, output, json.loads((tmp_path / "result").read_text())


def test_success_reports_the_manifest_artifacts(tmp_path: Path) -> None:
    code, output, result = run(tmp_path, template('"echo building"'))
    assert code == 0, output
    # The null builder's artifact carries no region: the target's cloud places it.
    assert result["ok"] is True and result["artifacts"] == [{"region": "eu-west-1", "id": "Null", "state": ""}]
    assert result["runUuid"] and result["packerVersion"]
    assert "building" in output
    assert decode(json.dumps(result)).ok


def test_invalid_template_is_permanent_with_packers_message(tmp_path: Path) -> None:
    invalid = template('"echo never"').replace('communicator = "none"', 'communicator = "none"\n  bogus_key = 1')
    code, _, result = run(tmp_path, invalid)
    assert code == 3
    assert result["errorClass"] == "Permanent"
    assert 'An argument named "bogus_key" is not expected here' in str(result["message"])


def test_failed_build_is_retryable_with_the_error_and_what_the_step_said(tmp_path: Path) -> None:
    code, _, result = run(tmp_path, template('"echo step one", "echo disk full >&2", "exit 7"'))
    assert code == 4
    assert result["errorClass"] == "Retryable"
    message = str(result["message"])
    assert "non-zero exit status: 7" in message
    # The step's own words, not Packer's summary lines, follow the error. Its stdout and stderr
    # reach Packer through separate pipes, so their relative order is not fixed.
    assert "; last output: " in message, message
    said = message.rsplit("; last output: ", 1)[1]
    assert sorted(said.split(" | ")) == ["disk full", "step one"], message


def test_secrets_never_reach_output_or_result(tmp_path: Path) -> None:
    text = template('"echo token=${var.token}", "echo token=$TOKEN", "echo $TOKEN | base64", "exit 1"')
    text = text.replace("inline = [", f'environment_vars = ["TOKEN={SECRET}"]\n    inline = [')
    code, output, result = run(tmp_path, text, "--sensitive-env=PKR_VAR_token", env={"PKR_VAR_token": SECRET})
    assert code == 4
    assert SECRET not in output and SECRET not in json.dumps(result)
    assert "czNjcmV0LXRva2VuLXZhbHVl" not in output  # base64 of the secret
    assert "<sensitive>" in output


def test_sigterm_is_forwarded_and_packer_stops(tmp_path: Path) -> None:
    argv = build_command(tmp_path, template('"echo started", "sleep 120"'))
    with (
        (tmp_path / "log").open("w") as log,
        started(argv, {}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True) as (process, tag),
    ):
        polling.until(lambda: "started" in (tmp_path / "log").read_text(), timeout=60, what="the build to start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
        # Packer (in a session of its own), its plugins and its provisioner's shell stop too.
        polling.until(lambda: processes.tagged(TAG, tag) == [], timeout=30, what="every process of the build to stop")
    result = json.loads((tmp_path / "result").read_text())
    assert result["errorClass"] == "Retryable" and "SIGTERM" in result["message"]
    assert "asking Packer to clean up" in (tmp_path / "log").read_text()
