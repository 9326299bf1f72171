"""The runner's entry point and stop signals: every way out leaves a result, and a stop signal
never leaves an instance behind."""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import pytest

from goldenimage.api.goldenimage import Target, Validation
from goldenimage.api.result import decode
from goldenimage.clouds.base import Instance
from goldenimage.runner import main, validate

RECIPE = {
    "targets": [{"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}],
    "validation": {"timeout": "1m", "checks": [{"tcp": {"port": 22}}]},
}


def test_a_crash_still_leaves_a_result(tmp_path: Path) -> None:
    (tmp_path / "main.pkr.hcl").write_text("")
    (tmp_path / "recipe.json").write_text(json.dumps(RECIPE))
    code = main.main(
        [
            "build",
            f"--template={tmp_path}/main.pkr.hcl",
            f"--inputs={tmp_path}",
            f"--work-dir={tmp_path}/work",
            f"--result={tmp_path}/result",
            "--target=aws-eu",
            f"--packer={tmp_path}/no-such-packer",
        ]
    )
    assert code == main.EXIT_CRASHED
    result = decode((tmp_path / "result").read_text())
    assert (result.kind, result.ok, result.error_class) == ("build", False, "Retryable")
    assert "FileNotFoundError" in result.message and "no-such-packer" in result.message


def validate_args(tmp_path: Path, tags: str = "{}") -> argparse.Namespace:
    (tmp_path / "recipe.json").write_text(json.dumps(RECIPE))
    return argparse.Namespace(
        recipe=tmp_path / "recipe.json",
        target="aws-eu",
        region="eu-west-1",
        image="ami-0123456789abcdef0",
        tags=tags,
        result=tmp_path / "result",
    )


def test_tags_that_are_not_an_object_are_refused_clearly(tmp_path: Path) -> None:
    assert validate.run(validate_args(tmp_path, tags="[]")) == validate.EXIT_USAGE
    result = decode((tmp_path / "result").read_text())
    assert result.error_class == "Permanent" and "--tags must be a JSON object" in result.message


class SignalledDuringLaunch:
    """A cloud whose launch is interrupted by SIGTERM after the instance exists."""

    name = "aws"

    def __init__(self) -> None:
        self.terminated: list[str] = []

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        os.kill(os.getpid(), signal.SIGTERM)
        return Instance(id="i-launched", region=region)

    def terminate(self, instance: Instance) -> None:
        self.terminated.append(instance.id)


def test_a_stop_signal_during_launch_still_terminates_the_instance(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    cloud = SignalledDuringLaunch()
    assert validate.run(validate_args(tmp_path), cloud) == validate.EXIT_TERMINATED  # type: ignore[arg-type]
    assert cloud.terminated == ["i-launched"]
    result = decode((tmp_path / "result").read_text())
    assert result.error_class == "Retryable" and "SIGTERM" in result.message
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_every_key_of_the_credentials_secret_is_moved_to_its_name_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key the runner has no name for (here EXTRA_TOKEN) is a secret all the same."""
    monkeypatch.setenv("GOLDENIMAGE_SECRET_AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY01")
    monkeypatch.setenv("GOLDENIMAGE_SECRET_EXTRA_TOKEN", "tok-0123456789-secret")
    environ = dict(os.environ)
    moved = main.unwrap_secret_env(environ)
    assert sorted(moved) == ["AWS_ACCESS_KEY_ID", "EXTRA_TOKEN"]
    assert environ["EXTRA_TOKEN"] == "tok-0123456789-secret"
    assert not [n for n in environ if n.startswith("GOLDENIMAGE_SECRET_")]
    # A validation whose recipe cannot be read reports why, and the value never appears in it.
    result = tmp_path / "result"
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"targets": "tok-0123456789-secret"}')  # the models' error quotes the input
    code = main.main(["validate", f"--recipe={recipe}", "--target=a", "--region=r", "--image=i", f"--result={result}"])
    assert code != 0
    assert "tok-0123456789-secret" not in result.read_text() + capsys.readouterr().out
