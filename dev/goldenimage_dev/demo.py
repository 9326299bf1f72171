"""The local demo: the whole loop on this machine, narrated as it happens.

It starts the control plane, the local clouds (real machines in the lab), the pod executor and
the operator; applies the AWS example and the candidate/prod channel pair; then watches version
1 build for real (the provisioners install nginx on a booted machine), boot-test and promote,
asks for version 2 and watches it promote, and rolls prod back with `kubectl golden`. Then the
GCP and Azure examples go the same way, their image family and gallery `latest` following the
channels through a rebuild, a rollback and a revocation. It ends with `kubectl get golden` and
the SSM parameter, and keeps everything running (unless told not to) so that you can try the
plugin yourself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import paths
from .clouds import GCP_PROJECT
from .fakes.arm import compute
from .fakes.gce import ApiError
from .stack import BIN, Stack

NAMESPACE = "demo"
REGIONS = ("eu-west-1", "us-east-1")
GCP_FAMILY = "web-base-candidate"
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
        client = self.stack.aws.client("ssm", region)
        with contextlib.suppress(client.exceptions.ParameterNotFound):
            return str(client.get_parameter(Name=name)["Parameter"]["Value"])
        return "(not set)"

    def published(self, channel: str, build: str) -> bool:
        status = self.get("imagebuild", build)["status"]
        expected = {a["region"]: a["id"] for t in status["targets"] for a in t["artifacts"]}
        return all(self.parameter(r, f"/golden/web-base/{channel}") == ami for r, ami in expected.items())

    # -- the story -------------------------------------------------------------------------

    def run(self) -> None:
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
        self.gcp_and_azure()
        self.say("")
        self.say(self.kubectl("get", "golden").stdout)
        self.say(self.golden("history", "web-prod"))

    def gcp_and_azure(self) -> None:
        """The GCP and Azure examples, built in parallel: the GCP channel's image family and the
        Azure gallery's latest follow the candidate channels, through a rebuild, a rollback and
        the revocation of the version rolled back to."""
        for account in ("packer-gcp", "packer-azure"):
            self.kubectl("create", "serviceaccount", account)
        for name in ("gcp-web-base.yaml", "azure-web-base.yaml"):
            self.kubectl("apply", "-f", str(paths.EXAMPLES / name))
            self.log(f"applied examples/{name}")
        self.moved("take version 1", 1, timeout=600)
        for image in ("web-base-gcp", "web-base-azure"):
            self.log(f"kubectl golden rebuild {image}: " + self.golden("rebuild", image))
        self.moved("take version 2", 2, timeout=600)
        for channel in ("web-gcp-candidate", "web-azure-candidate"):
            self.log(f"kubectl golden rollback {channel}: " + self.golden("rollback", channel))
        self.moved("roll back to version 1", 1, note=" (version 1 again)")
        for build in ("web-base-gcp-1", "web-base-azure-1"):
            self.log(f"kubectl golden revoke {build}: " + self.golden("revoke", build, "--reason", "CVE-2026-1234"))
        self.moved("move off the revoked version 1", 2, note=" (version 1 is revoked)")

    def moved(self, what: str, version: int, *, note: str = "", timeout: float = 300) -> None:
        """Wait for both candidates to point at `version` and their publication to follow; say
        what the GCP family and the Azure gallery's latest now serve."""
        self.wait(f"the GCP and Azure candidates to {what}", lambda: self.both(version), timeout=timeout)
        self.wait("the GCP family and the gallery's latest", lambda: self.followed(version))
        self.log(f"image family {GCP_FAMILY} resolves to {self.family()}{note}")
        self.log(f"gallery image web-base's latest is {self.gallery_latest()}{note}")

    def both(self, version: int) -> bool:
        return self.pointer("web-gcp-candidate") == version and self.pointer("web-azure-candidate") == version

    def followed(self, version: int) -> bool:
        """Whether the GCP family resolves to a copy of version `version`'s image and the Azure
        gallery's latest is that version's."""
        gcp = self.get("imagebuild", f"web-base-gcp-{version}")["status"]["targets"][0]["artifacts"][0]["id"]
        azure = self.get("imagebuild", f"web-base-azure-{version}")["status"]["targets"][0]["artifacts"][0]["id"]
        try:
            source = self.stack.clouds.gce.image_from_family(GCP_PROJECT, GCP_FAMILY)["sourceImage"]
        except ApiError:  # the family resolves to nothing yet
            return False
        return bool(source.endswith(gcp) and azure.rsplit("/", 1)[-1] == self.gallery_latest())

    def family(self) -> str:
        image = self.stack.clouds.gce.image_from_family(GCP_PROJECT, GCP_FAMILY)
        return f"{image['name']} (a copy of {image['sourceImage'].rsplit('/', 1)[-1]})"

    def gallery_latest(self) -> str:
        """What the web-base definition's `latest` serves: its highest version not excluded."""
        included = [
            v["name"]
            for v in self.stack.clouds.arm.resources(compute.GALLERY_VERSION)
            if "/images/web-base/versions/" in v["id"]
            and not v["properties"]["publishingProfile"].get("excludeFromLatest")
        ]
        return max(included, key=lambda name: [int(part) for part in name.split(".")], default="(none)")


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
    (directory / MARKER).write_text("made by `goldenimage-dev demo`, which empties this directory when it runs again\n")


def main(directory: Path, wait: bool) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    try:
        claim(directory)
    except DirectoryError as exc:
        print(f"goldenimage-dev demo: {exc}", file=sys.stderr)
        return 2
    say(f"starting the control plane, the local clouds, the pod executor and the operator in {directory} ...")
    stack = Stack.start(directory=directory, build=True)
    try:
        Demo(stack, say).run()
        say("")
        say("Everything is still running, in the demo's own network namespace. In another shell (as root):")
        say(f"  nsenter --net=/proc/{os.getpid()}/ns/net bash")
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
        stack.stop()
        say(f"stopped; logs are in {directory / 'logs'}")


if __name__ == "__main__":
    sys.exit(main(Path(os.environ.get("GOLDENIMAGE_DEMO_DIR", ".local/demo")), wait=True))
