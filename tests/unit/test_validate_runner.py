"""The validation runner against a fake cloud and real sockets on 127.0.0.1: checks pass and
fail for real, and the instance is terminated whatever happens."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from goldenimage.api.errors import CloudError, CloudRefusedError
from goldenimage.api.goldenimage import Target, Validation
from goldenimage.api.result import decode
from goldenimage.clouds.base import Instance
from goldenimage.runner import validate


class FakeCloud:
    name = "aws"

    def __init__(
        self,
        *,
        fail_launch: Exception | None = None,
        ready_after: int = 1,
        exit_code: int = 0,
        refuse_ready: bool = False,
    ) -> None:
        self.fail_launch = fail_launch
        self.refuse_ready = refuse_ready
        self.ready_after = ready_after
        self.exit_code = exit_code
        self.launched: list[tuple[str, str, Mapping[str, str]]] = []
        self.terminated: list[str] = []
        self.commands: list[str] = []

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        if self.fail_launch is not None:
            raise self.fail_launch
        self.launched.append((region, image, dict(tags)))
        return Instance(id="i-1", region=region)

    def ready(self, instance: Instance) -> Instance | None:
        if self.refuse_ready:
            raise CloudRefusedError("UnauthorizedOperation: not allowed to describe instances")
        self.ready_after -= 1
        return Instance(id=instance.id, region=instance.region, address="127.0.0.1") if self.ready_after <= 0 else None

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        self.commands.append(command)
        return self.exit_code, "active"

    def terminate(self, instance: Instance) -> None:
        self.terminated.append(instance.id)


@pytest.fixture
def server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering /health with "ok"; stopped after the test."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    tmp_path: Path, checks: list[dict[str, Any]], cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, **validation: Any
) -> tuple[int, Any]:
    monkeypatch.setattr(validate, "POLL", 0.01)
    monkeypatch.setattr(validate.checks, "RETRY_EVERY", 0.05)
    recipe = {
        "targets": [{"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}],
        "validation": {"timeout": "30s", "checks": checks} | validation,
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    parser = validate.argparse.ArgumentParser()
    validate.add_arguments(parser)
    args = parser.parse_args(
        [
            f"--recipe={tmp_path / 'recipe.json'}",
            "--target=aws-eu",
            "--region=eu-west-1",
            "--image=ami-1",
            '--tags={"goldenimage.io/build-id": "b-1"}',
            f"--result={tmp_path / 'result'}",
        ]
    )
    code = validate.run(args, cloud)
    return code, decode((tmp_path / "result").read_text())


def test_all_checks_pass(tmp_path: Path, server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = FakeCloud(ready_after=3)
    checks = [
        {"tcp": {"port": server}},
        {"http": {"port": server, "path": "/health", "contains": "ok"}},
        {"command": {"run": "true"}},
    ]
    code, result = run(tmp_path, checks, cloud, monkeypatch)
    assert code == 0 and result.ok and result.kind == "validate"
    assert [(c.name, c.passed) for c in result.checks] == [
        (f"tcp-{server}", True),
        (f"http-{server}", True),
        ("command", True),
    ]
    assert cloud.launched == [("eu-west-1", "ami-1", {"goldenimage.io/build-id": "b-1"})]
    assert cloud.terminated == ["i-1"] and cloud.commands == ["true"]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"tcp": {"port": 0}, "timeout": "1s"}, "cannot connect"),
        ({"http": {"port": 0, "path": "/missing"}, "timeout": "1s"}, "status 503, expected 200"),
        ({"http": {"port": 0, "path": "/health", "contains": "healthy"}, "timeout": "1s"}, "lacks 'healthy'"),
        (
            {"command": {"run": "systemctl is-active nginx", "expectExitCode": 3}, "timeout": "1s"},
            "exited 0, expected 3",
        ),
    ],
)
def test_failing_checks_say_why_and_the_instance_still_goes(
    tmp_path: Path, server: int, monkeypatch: pytest.MonkeyPatch, check: dict[str, Any], message: str
) -> None:
    kind = next(k for k in ("tcp", "http") if k in check) if "command" not in check else None
    if kind:  # a copy: the parameters are shared by every run of the test
        check = {**check, kind: {**check[kind], "port": closed_port() if kind == "tcp" else server}}
    cloud = FakeCloud()
    code, result = run(tmp_path, [check], cloud, monkeypatch)
    assert code == 6 and not result.ok
    assert message in result.checks[0].message
    assert cloud.terminated == ["i-1"]


def test_launch_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = FakeCloud(fail_launch=CloudError("InsufficientInstanceCapacity"))
    code, result = run(tmp_path, [], cloud, monkeypatch)
    assert code == 4 and "InsufficientInstanceCapacity" in result.message
    assert result.error_class == "Retryable" and cloud.terminated == []


def test_a_launch_the_cloud_refuses_is_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = CloudRefusedError("InvalidAMIID.NotFound: the image ami-1 does not exist")
    code, result = run(tmp_path, [], FakeCloud(fail_launch=refused), monkeypatch)
    assert (code, result.error_class, result.ok) == (4, "Permanent", False)
    assert "ami-1 does not exist" in result.message


def test_a_refusal_after_the_launch_is_permanent_and_the_instance_still_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = FakeCloud(refuse_ready=True)
    code, result = run(tmp_path, [], cloud, monkeypatch)
    assert (code, result.error_class) == (4, "Permanent") and "UnauthorizedOperation" in result.message
    assert cloud.terminated == ["i-1"]


def test_an_instance_that_never_gets_ready_times_out_and_is_terminated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = FakeCloud(ready_after=10**9)
    code, result = run(tmp_path, [], cloud, monkeypatch, timeout="1s")
    assert code == 4 and "did not pass its status checks within 1s" in result.message
    assert cloud.terminated == ["i-1"]


def test_an_address_outside_the_allowed_networks_is_never_probed(
    tmp_path: Path, server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDENIMAGE_VALIDATION_NETWORKS", "10.0.0.0/8")
    cloud = FakeCloud()
    code, result = run(tmp_path, [{"tcp": {"port": server}}], cloud, monkeypatch)
    assert code == 6 and "outside the networks validation may connect to (10.0.0.0/8)" in result.message
    assert result.checks == [] and cloud.terminated == ["i-1"]
