"""The local demo: the whole loop on this machine, narrated as it happens.

It starts the control plane, moto, the pod executor and the operator; applies the AWS example
and the candidate/prod channel pair; then watches version 1 build, boot-test and promote,
asks for version 2 and watches it promote, and rolls prod back with `kubectl golden`. It ends
with `kubectl get golden` and the SSM parameter, and keeps everything running (unless told not
to) so that you can try the plugin yourself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import paths
from .instances import InstanceAgent, Services, prepare_validation
from .stack import BIN, Stack

NAMESPACE = "demo"
REGIONS = {"eu-west-1": "127.0.5.0/24", "us-east-1": "127.0.6.0/24"}
PROD_SOAK = "20s"
# Written into the demo's directory: only a directory carrying it is ever emptied by the demo.
MARKER = ".goldenimage-demo"


class DirectoryError(Exception):
    """The demo's directory is not one the demo may use."""


class Demo:
    def __init__(self, stack: Stack, say: Callable[[str], None]) -> None:
        self.stack = stack
        self.plane = stack.cluster.plane
        self.say = say
        self.started = time.monotonic()
        self.seen: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl("-n", NAMESPACE, *args, check=check)

    def get(self, *args: str) -> Any:
        return self.plane.kubectl_json("-n", NAMESPACE, "get", *args)

    def golden(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "kubectl-golden"), f"--kubeconfig={self.stack.kubeconfig}", "-n", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl golden {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.rstrip()

    def log(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self.started:5.0f}s] {text}")

    def narrate(self) -> None:
        """Print what changed since the last look: build conditions and channel pointers."""
        for build in self.get("imagebuilds")["items"]:
            name = build["metadata"]["name"]
            for condition in build.get("status", {}).get("conditions", []):
                key = f"{name}/{condition['type']}"
                state = f"{condition['status']}/{condition['reason']}"
                if self.seen.get(key) != state and condition["type"] in ("Built", "Validated", "Ready"):
                    self.seen[key] = state
                    if condition["reason"] != "NotBuilt":
                        what = f"{condition['type']}={condition['status']} ({condition['reason']}"
                        self.log(f"ImageBuild {name}: {what}: {condition['message']})")
                    if condition["reason"] in ("BuildFailed", "ValidationFailed") and not build["spec"].get("revoked"):
                        raise RuntimeError(f"{name}: {condition['message']}; see {self.stack.operator_log}")
        for channel in self.get("imagechannels")["items"]:
            name = channel["metadata"]["name"]
            current = channel.get("status", {}).get("current") or {}
            state = f"{current.get('version')}"
            if current and self.seen.get(name) != state:
                self.seen[name] = state
                self.log(
                    f"ImageChannel {name} -> version {current['version']} ({current['reason']}: {current['message']})"
                )

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.narrate()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; see {self.stack.operator_log}")
            time.sleep(0.5)
        self.narrate()

    def pointer(self, channel: str) -> int | None:
        current = self.get("imagechannel", channel).get("status", {}).get("current") or {}
        version = current.get("version")
        return int(version) if version is not None else None

    def parameter(self, region: str, name: str) -> str:
        client = self.stack.moto.aws.client("ssm", region)
        with contextlib.suppress(client.exceptions.ParameterNotFound):
            return str(client.get_parameter(Name=name)["Parameter"]["Value"])
        return "(not set)"

    def published(self, channel: str, build: str) -> bool:
        status = self.get("imagebuild", build)["status"]
        expected = {a["region"]: a["id"] for t in status["targets"] for a in t["artifacts"]}
        return all(self.parameter(r, f"/golden/web-base/{channel}") == ami for r, ami in expected.items())

    # -- the story -------------------------------------------------------------------------

    def run(self, low_ports: bool) -> None:
        self.plane.kubectl("create", "namespace", NAMESPACE, check=False)
        self.wait(
            "the namespace's default service account",
            lambda: self.kubectl("get", "sa", "default", check=False).returncode == 0,
        )
        self.kubectl("create", "serviceaccount", "packer-aws")
        examples = paths.EXAMPLES
        for name in ("web-baseline-playbook.yaml", "aws-web-base.yaml", "channels.yaml"):
            self.kubectl("apply", "-f", str(examples / name))
            self.log(f"applied examples/{name}")
        patch = {"spec": {"source": {"channel": "web-candidate", "minSoak": PROD_SOAK}}}
        self.kubectl("patch", "imagechannel", "web-prod", "--type=merge", "-p", json.dumps(patch))
        self.log(f"web-prod soaks {PROD_SOAK} instead of 24h, for the demo")
        if not low_ports:
            checks = [
                {"tcp": {"port": 2222}},
                {"http": {"port": 8080, "path": "/health", "expectStatus": 200, "contains": "ok"}},
                {"name": "nginx-running", "command": {"run": "systemctl is-active nginx"}},
            ]
            self.kubectl(
                "patch",
                "goldenimage",
                "web-base",
                "--type=merge",
                "-p",
                json.dumps({"spec": {"validation": {"checks": checks}}}),
            )
            self.log("not root: the checks use ports 2222 and 8080 instead of 22 and 80")

        self.wait("web-candidate to take version 1", lambda: self.pointer("web-candidate") == 1)
        self.wait("web-prod to take version 1 after its soak", lambda: self.pointer("web-prod") == 1)
        self.wait("web-prod's SSM parameter", lambda: self.published("prod", "web-base-1"))
        self.log("kubectl golden rebuild web-base: " + self.golden("rebuild", "web-base"))
        self.wait("web-candidate to take version 2", lambda: self.pointer("web-candidate") == 2)
        self.wait("web-prod to take version 2 after its soak", lambda: self.pointer("web-prod") == 2)
        self.wait("web-prod's SSM parameter", lambda: self.published("prod", "web-base-2"))
        for region in REGIONS:
            self.log(f"/golden/web-base/prod in {region} = {self.parameter(region, '/golden/web-base/prod')}")
        self.log("kubectl golden rollback web-prod: " + self.golden("rollback", "web-prod"))
        self.wait("web-prod to roll back to version 1", lambda: self.pointer("web-prod") == 1)
        self.wait("web-prod's SSM parameter", lambda: self.published("prod", "web-base-1"))
        for region in REGIONS:
            value = self.parameter(region, "/golden/web-base/prod")
            self.log(f"/golden/web-base/prod in {region} = {value} (version 1 again)")
        self.say("")
        self.say(self.kubectl("get", "golden").stdout)
        self.say(self.golden("history", "web-prod"))


def _can_bind_low_ports() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.5.1", 80))
        except OSError:
            return False
    return True


def claim(directory: Path) -> None:
    """Make `directory` the demo's: a new or empty one, or an earlier demo's, which is emptied.
    Anything else is refused: the demo removes nothing it did not create."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise DirectoryError(f"{directory} is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not (directory / MARKER).is_file():
            raise DirectoryError(
                f"{directory} is not empty and is not an earlier demo's (it has no {MARKER}): "
                "give --dir a new or empty directory"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by `goldenimage demo`, which empties this directory when it runs again\n")


def main(directory: Path, wait: bool) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    try:
        claim(directory)
    except DirectoryError as exc:
        print(f"goldenimage demo: {exc}", file=sys.stderr)
        return 2
    say(f"starting the control plane, moto, the pod executor and the operator in {directory} ...")
    stack = Stack.start(directory=directory, build=True)
    agent: InstanceAgent | None = None
    try:
        prepare_validation(stack.moto.endpoint, REGIONS, {"Purpose": "image-validation"}, "image-validation-ssm")
        low_ports = _can_bind_low_ports()
        tcp, http = (22, 80) if low_ports else (2222, 8080)
        agent = InstanceAgent(
            stack.moto.endpoint, list(REGIONS), Services(tcp=(tcp,), http={http: {"/health": "ok\n"}})
        ).start()
        Demo(stack, say).run(low_ports)
        say("")
        say("Everything is still running. In another shell:")
        say(f"  export KUBECONFIG={stack.kubeconfig} PATH={BIN}:$PATH")
        say(f"  kubectl get golden -n {NAMESPACE}")
        say(f"  kubectl golden status -n {NAMESPACE}")
        say(f"  kubectl golden history web-prod -n {NAMESPACE}")
        say(f"  kubectl golden rollback web-candidate -n {NAMESPACE}")
        say(f"  kubectl golden revoke web-base-1 --reason CVE-2026-1234 -n {NAMESPACE}")
        if wait:
            say("Stop the demo with Ctrl-C.")
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
        return 0
    finally:
        say("stopping ...")
        if agent is not None:
            agent.stop()
        stack.stop()
        say(f"stopped; logs are in {directory / 'logs'}")


if __name__ == "__main__":
    sys.exit(main(Path(os.environ.get("GOLDENIMAGE_DEMO_DIR", ".local/demo")), wait=True))
