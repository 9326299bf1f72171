"""GCP end to end: the operator as a process, real Packer in Jobs building through the TLS edge
against the Compute Engine fake, whose instances are booted machines in the lab. The example
builds, boots for validation and is promoted; channels move their label and their image family
(resolved by GCE's getFromFamily); failing checks block; deletion, source changes, a killed
runner and a family that resolves to nothing each do what the GCP adapter promises."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from goldenimage import paths
from goldenimage.api import names
from goldenimage.api.group import API_VERSION
from goldenimage.clouds.gcp.adapter import BUILD_KEY, REVOKED_KEY
from goldenimage.clouds.gcp.kind import label_value, parse_image
from goldenimage.clouds.gcp.publish import CHANNEL_KEY
from goldenimage_dev.clouds import GCP_FAMILY, GCP_PROJECT, GCP_PUBLIC_PROJECT
from goldenimage_dev.fakes.gce import ApiError
from goldenimage_dev.stack import Stack
from support import polling, procs
from support.builds import kill_runner, wait_built, wait_failed, wait_ready, wait_version
from support.cluster import Cluster, condition_of
from support.manifests import image_channel

pytestmark = pytest.mark.e2e

ZONE = "europe-west1-b"


def build_id(build: dict[str, Any]) -> str:
    return names.build_id(build["metadata"]["name"], build["metadata"]["uid"])


def images_of(stack: Stack, identity: str) -> list[dict[str, Any]]:
    """The fake's images that carry the build id label `identity`, channels' family copies
    (which carry it too, so that they go with the build) left out."""
    return [
        i
        for i in stack.clouds.gce.images(GCP_PROJECT)
        if i["labels"].get(BUILD_KEY) == label_value(identity) and CHANNEL_KEY not in i["labels"]
    ]


def instances_and_disks_of(stack: Stack, identity: str) -> list[str]:
    """Instances and disks of a build: by its label, or by the build id in their names (Packer
    1.6.6 does not label its disk)."""
    gce = stack.clouds.gce
    value = label_value(identity)
    return [
        f"{kind}/{doc['name']}"
        for kind, docs in (("instance", gce.instances(GCP_PROJECT)), ("disk", gce.disks(GCP_PROJECT)))
        for doc in docs
        if (doc.get("labels") or {}).get(BUILD_KEY) == value or value in doc["name"]
    ]


def nothing_running(stack: Stack, identity: str) -> bool:
    if left := instances_and_disks_of(stack, identity):
        raise AssertionError(f"left behind: {left}")
    return True


def labelled(stack: Stack, key: str, value: str = "current") -> list[str]:
    return sorted(i["name"] for i in stack.clouds.gce.images(GCP_PROJECT) if i["labels"].get(key) == value)


def family_image(stack: Stack, family: str) -> dict[str, Any] | None:
    """What images.getFromFamily answers (None when the family resolves to nothing)."""
    try:
        return stack.clouds.gce.image_from_family(GCP_PROJECT, family)
    except ApiError:
        return None


def test_gcp_example_builds_boots_and_is_promoted(stack: Stack, cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "serviceaccount", "packer-gcp", "-n", ns)
    for path in ("web-baseline-playbook.yaml", "gcp-web-base.yaml"):
        cluster.kubectl("apply", "-n", ns, "-f", str(paths.EXAMPLES / path))
    build = wait_ready(cluster, ns, "web-base-gcp-1")
    identity = build_id(build)
    assert build["spec"]["sources"] == {"gcp-eu": "debian-12-bookworm-v20250428"}  # the family's newest

    # One image, made by Packer from a booted machine, labelled with the build id; recorded with
    # where it is stored.
    (image,) = images_of(stack, identity)
    (target,) = build["status"]["targets"]
    (artifact,) = target["artifacts"]
    assert artifact == {"region": "eu", "id": f"projects/{GCP_PROJECT}/global/images/{image['name']}"}
    assert image["status"] == "READY" and image["storageLocations"] == ["eu"]
    assert image["labels"]["role"] == "web"
    machine = stack.clouds.gce.machine_image(GCP_PROJECT, image["name"])
    assert machine is not None
    # What the Ansible baseline wrote on the builder machine is in the image.
    assert stack.clouds.run_in_image(machine, ["cat", "/etc/image-role", "/var/www/html/health"]) == (0, "web\nok\n")

    # Validation booted the image: SSH's port and nginx's /health page answered.
    (result,) = build["status"]["validation"]
    assert result["phase"] == "Passed"
    assert [(c["name"], c["passed"]) for c in result["checks"]] == [("tcp-22", True), ("http-80", True)]
    validated = condition_of(build, "Validated")
    assert validated and validated["status"] == "True"
    polling.until(lambda: nothing_running(stack, identity), what="no instance or disk of the build")

    # The candidate channel takes it: its label on exactly this image, its family resolving to
    # a copy of it.
    channel = polling.until(
        lambda: (cluster.get("imagechannel", "web-gcp-candidate", "-n", ns).get("status") or {}).get("current"),
        what="the candidate channel to point at a version",
    )
    assert channel["version"] == 1
    polling.until(
        lambda: labelled(stack, "channel-web-candidate") == [image["name"]], what="the channel label on the image"
    )
    newest = polling.until(
        lambda: family_image(stack, "web-base-candidate"), what="the channel's family to resolve to an image"
    )
    assert newest["sourceImage"].endswith(f"/global/images/{image['name']}")
    assert newest["labels"][BUILD_KEY] == label_value(identity)

    def config_map() -> dict[str, Any] | None:
        found = cluster.get_or_none("configmap", "web-base-gcp-candidate", ns)
        return found if found and found["data"].get("build") == "web-base-gcp-1" else None

    published = polling.until(config_map, what="the channel's ConfigMap")
    assert published["data"]["gcp-eu.eu"] == artifact["id"], published["data"]


# A small mark rather than the example's provisioning: these tests are about what happens around
# the build.
MARK = [{"shell": {"inline": ["echo built | sudo tee /etc/image-mark"]}}]
DEBIAN = {"family": GCP_FAMILY, "project": GCP_PUBLIC_PROJECT}
# SSH's port, and a command run over SSH with the key the validation made for its instance.
CHECKS = [{"tcp": {"port": 22}}, {"name": "mark", "command": {"run": "cat /etc/image-mark"}, "timeout": "60s"}]


def gcp_image(name: str, *, source: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A GoldenImage with one GCP target, named gcp, in the seeded project, validated by CHECKS
    unless `spec` says otherwise."""
    target = {
        "project": GCP_PROJECT,
        "zone": ZONE,
        "machineType": "e2-small",
        "source": source or DEBIAN,
        "sshUsername": "admin",
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "GoldenImage",
        "metadata": {"name": name},
        "spec": {
            "targets": [{"name": "gcp", "gcp": target}],
            "provisioners": MARK,
            "validation": {"timeout": "5m", "checks": CHECKS},
            **spec,
        },
    }


def image_name(cluster: Cluster, ns: str, build: str) -> str:
    (target,) = cluster.get("imagebuild", build, "-n", ns)["status"]["targets"]
    (artifact,) = target["artifacts"]
    project, name = parse_image(artifact["id"])
    assert project == GCP_PROJECT, artifact
    return name


CHANNEL_LABEL = "channel-app"
FAMILY = "app-candidate"


def assert_published(stack: Stack, image: str) -> None:
    """Exactly `image` carries the channel's label, and the channel's family resolves to its copy."""
    polling.until(lambda: labelled(stack, CHANNEL_LABEL) == [image], what=f"exactly {image} to carry {CHANNEL_LABEL}")

    def resolves() -> dict[str, Any] | None:
        found = family_image(stack, FAMILY)
        return found if found and found["sourceImage"].endswith(f"/global/images/{image}") else None

    copy = polling.until(resolves, what=f"family {FAMILY} to resolve to a copy of {image}")

    def only_copy_active() -> bool:
        # The new copy is made before the others are deprecated: for a moment both are active.
        active = [
            i["name"]
            for i in stack.clouds.gce.images(GCP_PROJECT)
            if i.get("family") == FAMILY and (i.get("deprecated") or {}).get("state", "ACTIVE") == "ACTIVE"
        ]
        if active != [copy["name"]]:
            raise AssertionError(f"active members of {FAMILY}: {active}")
        return True

    polling.until(only_copy_active, what=f"{copy['name']} to be the only active member of {FAMILY}")


def test_a_channel_moves_its_label_and_family_through_rebuild_rollback_and_revocation(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    publish = {"gcp": {"label": {"key": CHANNEL_LABEL, "value": "current"}, "family": FAMILY}}
    cluster.apply([gcp_image("app"), image_channel("candidate", "app", publish=publish)], ns)
    (result,) = wait_ready(cluster, ns, "app-1")["status"]["validation"]
    mark = {c["name"]: c for c in result["checks"]}["mark"]
    assert mark["passed"] and mark["message"].endswith("exited 0: built"), mark
    assert wait_version(cluster, ns, "candidate", 1) == "LatestValidated"
    first = image_name(cluster, ns, "app-1")
    assert_published(stack, first)

    # Version 2, by request: the label and the family move on.
    assert cluster.golden(ns, "rebuild", "app").returncode == 0
    wait_ready(cluster, ns, "app-2")
    wait_version(cluster, ns, "candidate", 2)
    second = image_name(cluster, ns, "app-2")
    assert second != first
    assert_published(stack, second)

    # Rolled back with the plugin (spec.version): both move back to version 1.
    rolled = cluster.golden(ns, "rollback", "candidate")
    assert rolled.returncode == 0, rolled.stderr
    assert wait_version(cluster, ns, "candidate", 1) == "Rollback"
    assert_published(stack, first)

    # Unpinned, it follows version 2 again; revoking 2 deprecates its image and moves the channel.
    cluster.kubectl("patch", "imagechannel", "candidate", "-n", ns, "--type=merge", "-p", '{"spec": {"version": null}}')
    wait_version(cluster, ns, "candidate", 2)
    assert_published(stack, second)
    revoked = cluster.golden(ns, "revoke", "app-2", "--reason", "CVE-2026-1234")
    assert revoked.returncode == 0, revoked.stderr
    assert wait_version(cluster, ns, "candidate", 1) == "Revoked"
    assert_published(stack, first)

    def deprecated() -> dict[str, Any] | None:
        image = stack.clouds.gce.image(GCP_PROJECT, second)
        return image if image and (image.get("deprecated") or {}).get("state") == "DEPRECATED" else None

    image = polling.until(deprecated, what=f"{second} to be DEPRECATED")
    assert image["labels"][REVOKED_KEY] == "cve-2026-1234"
    done = polling.until(
        lambda: condition_of(cluster.get("imagebuild", "app-2", "-n", ns), "Deprecated"), what="app-2's Deprecated"
    )
    assert done["status"] == "True", done


def test_a_failing_check_blocks_promotion_and_leaves_no_instance(stack: Stack, cluster: Cluster, ns: str) -> None:
    # Nothing serves port 2999 on the machine.
    checks = [
        {"tcp": {"port": 22}},
        {"tcp": {"port": 2999}, "timeout": "4s"},
        {"name": "marker", "command": {"run": "test -e /etc/never-baked"}, "timeout": "20s"},
    ]
    failing = gcp_image("flaky", validation={"timeout": "5m", "checks": checks})
    publish = {"gcp": {"label": {"key": "channel-flaky", "value": "current"}}}
    cluster.apply([failing, image_channel("candidate", "flaky", publish=publish)], ns)

    def settled() -> dict[str, Any] | None:
        build = cluster.get_or_none("imagebuild", "flaky-1", ns)
        validated = condition_of(build, "Validated")
        failed = validated and (validated["status"], validated["reason"]) == ("False", "ValidationFailed")
        return build if failed else None

    build = polling.until(settled, timeout=600, what="flaky-1 to fail validation")
    ready_ = condition_of(build, "Ready")
    assert ready_ and ready_["reason"] == "ValidationFailed" and "tcp-2999" in ready_["message"], ready_
    passed = {c["name"]: c["passed"] for v in build["status"]["validation"] for c in v["checks"]}
    assert passed == {"tcp-22": True, "tcp-2999": False, "marker": False}
    (marker,) = [c["message"] for v in build["status"]["validation"] for c in v["checks"] if c["name"] == "marker"]
    assert "exited 1, expected 0" in marker, marker
    identity = build_id(build)
    polling.until(lambda: nothing_running(stack, identity), what="no instance or disk of the build")

    def waiting() -> dict[str, Any] | None:
        channel = cluster.get("imagechannel", "candidate", "-n", ns)
        condition = condition_of(channel, "Ready")
        return channel.get("status") if condition and condition["reason"] == "NoValidatedVersion" else None

    assert polling.until(waiting, what="the channel to report no validated version").get("current") is None
    assert labelled(stack, "channel-flaky") == []


def all_images_of(stack: Stack, identity: str) -> list[str]:
    """Names of every image carrying the build id label `identity`, channels' copies included."""
    value = label_value(identity)
    return sorted(i["name"] for i in stack.clouds.gce.images(GCP_PROJECT) if i["labels"].get(BUILD_KEY) == value)


def test_deleting_a_build_removes_exactly_its_images_and_their_family_copies(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    family = "doomed-candidate"
    image = gcp_image("doomed", retention={"deletionPolicy": "Delete"})
    cluster.apply([image, image_channel("candidate", "doomed", publish={"gcp": {"family": family}})], ns)
    first = build_id(wait_ready(cluster, ns, "doomed-1"))
    wait_version(cluster, ns, "candidate", 1)
    (image_1,) = images_of(stack, first)
    copy_1 = f"{family}-{image_1['name']}"
    polling.until(lambda: all_images_of(stack, first) == sorted([image_1["name"], copy_1]), what="version 1's copy")
    # A channel that refers to a version keeps its artifacts; once it is gone (it leaves what it
    # published as it is), nothing does.
    cluster.kubectl("delete", "imagechannel", "candidate", "-n", ns)
    assert cluster.golden(ns, "rebuild", "doomed").returncode == 0
    second = build_id(wait_built(cluster, ns, "doomed-2"))
    (image_2,) = images_of(stack, second)
    assert all_images_of(stack, first) == sorted([image_1["name"], copy_1])
    # An image whose name says it is the build's, but whose label does not: not the build's.
    impostor = f"{first}-a9"
    stack.clouds.gce.add_image(GCP_PROJECT, impostor, labels={BUILD_KEY: "someone-else"})

    cluster.kubectl("delete", "imagebuild", "doomed-1", "-n", ns)
    polling.until(
        lambda: all_images_of(stack, first) == [], timeout=120, what="doomed-1's image and its copy to be deleted"
    )
    assert all_images_of(stack, second) == [image_2["name"]]

    cluster.kubectl("delete", "goldenimage", "doomed", "-n", ns)
    polling.until(
        lambda: cluster.get_or_none("imagebuild", "doomed-2", ns) is None, timeout=120, what="doomed-2's deletion"
    )
    assert all_images_of(stack, second) == []
    assert stack.clouds.gce.image(GCP_PROJECT, impostor) is not None


def test_a_new_image_in_the_source_family_makes_a_new_version(stack: Stack, cluster: Cluster, ns: str) -> None:
    family = "fresh-debian"  # this test's own, so the seeded family stays as the others expect it
    gce = stack.clouds.gce
    gce.add_image(GCP_PUBLIC_PROJECT, f"{family}-v1", family=family, created=datetime(2025, 1, 1, tzinfo=UTC))
    source = {"family": family, "project": GCP_PUBLIC_PROJECT}
    cluster.apply(gcp_image("fresh", source=source, rebuild={"onSourceChange": True}), ns)
    first = wait_built(cluster, ns, "fresh-1")
    assert first["spec"]["sources"] == {"gcp": f"{family}-v1"}

    gce.add_image(GCP_PUBLIC_PROJECT, f"{family}-v2", family=family)
    second = wait_built(cluster, ns, "fresh-2")
    assert second["spec"]["reason"] == "SourceChanged"
    assert second["spec"]["sources"] == {"gcp": f"{family}-v2"}
    assert [b["metadata"]["name"] for b in cluster.get("imagebuilds", "-n", ns)["items"]] == ["fresh-1", "fresh-2"]


# A user template whose provisioner holds the build mid-way, on its booted builder machine, with
# its instance and disk created (labelled and named as the renderer would).
HANGING = """
variable "build_id" {
  type = string
}
variable "attempt" {
  type = string
}
variable "region" {
  type = string
}
source "googlecompute" "hang" {
  project_id              = "platform-images"
  zone                    = var.region
  source_image_family     = "debian-12"
  source_image_project_id = ["debian-cloud"]
  machine_type            = "e2-small"
  image_name              = "${var.build_id}-a${var.attempt}"
  instance_name           = "packer-${var.build_id}-gcp-a${var.attempt}"
  ssh_username            = "admin"
  use_internal_ip         = true
  labels = {
    "goldenimage-io_build-id" = var.build_id
    "goldenimage-io_target"   = "gcp"
    "goldenimage-io_attempt"  = var.attempt
  }
}
build {
  sources = ["source.googlecompute.hang"]
  provisioner "shell" {
    inline = ["sleep 600"]
  }
}
"""


def test_a_killed_build_is_swept(stack: Stack, cluster: Cluster, ns: str) -> None:
    """SIGKILL (a crashed node): Packer cannot delete its instance and disk, so the operator
    sweeps what the failed attempt left, the instance by its labels and the disk by its name."""
    cluster.kubectl("create", "configmap", "hang", "-n", ns, f"--from-literal=main.pkr.hcl={HANGING}")
    hanging = gcp_image(
        "killed", template={"configMapRef": {"name": "hang", "key": "main.pkr.hcl"}}, build={"maxAttempts": 1}
    )
    del hanging["spec"]["provisioners"]
    cluster.apply(hanging, ns)
    build = polling.until(lambda: cluster.get_or_none("imagebuild", "killed-1", ns), what="the ImageBuild")
    identity = build_id(build)
    left = polling.until(
        lambda: sorted(instances_and_disks_of(stack, identity)), timeout=180, what="Packer's instance and disk"
    )
    assert [r.split("/")[0] for r in left] == ["disk", "instance"], left
    uid = kill_runner(cluster, ns, "killed-1")
    done = wait_failed(cluster, ns, "killed-1", timeout=300)
    assert "exit code 137" in done["status"]["targets"][0]["message"]
    assert procs.in_container(uid) == []  # Packer died with its container, before it could clean up
    polling.until(lambda: nothing_running(stack, identity), timeout=120, what="the instance and disk to be swept")
    assert images_of(stack, identity) == []


def _family_requests(stack: Stack, family: str) -> int:
    return sum(1 for e in list(stack.clouds.edge.exchanges) if f"/images/family/{family}" in e.path)


def test_a_family_that_resolves_to_nothing_is_reported_without_a_retry_storm(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    family = "no-such-family"
    cluster.apply(gcp_image("lost", source={"family": family, "project": GCP_PUBLIC_PROJECT}), ns)

    def message() -> str | None:
        condition = condition_of(cluster.get_or_none("goldenimage", "lost", ns), "Ready")
        return str(condition["message"]) if condition and condition["reason"] == "SourceNotFound" else None

    text = polling.until(message, what="the image to say its family resolves to nothing")
    assert f"image family {family} in project {GCP_PUBLIC_PROJECT} has no usable image" in text, text

    # The operator asks again at its resync, not in a loop: a few reads over several seconds.
    start, asked = time.monotonic(), _family_requests(stack, family)
    polling.until(lambda: _family_requests(stack, family) >= asked + 2, timeout=60, what="the operator to ask again")
    elapsed = time.monotonic() - start
    assert _family_requests(stack, family) - asked <= 2 + elapsed, "the family is asked for in a loop"
    assert cluster.get("imagebuilds", "-n", ns)["items"] == []
    assert cluster.get("jobs", "-n", ns)["items"] == []


def test_a_zone_that_does_not_exist_is_refused_before_any_build(stack: Stack, cluster: Cluster, ns: str) -> None:
    image = gcp_image("nowhere")
    image["spec"]["targets"][0]["gcp"]["zone"] = "europe-west9-z"
    cluster.apply(image, ns)

    def message() -> str | None:
        condition = condition_of(cluster.get_or_none("goldenimage", "nowhere", ns), "Ready")
        return str(condition["message"]) if condition and condition["reason"] == "CloudRefused" else None

    text = polling.until(message, what="the image to say its zone does not exist")
    assert f"zone europe-west9-z does not exist in project {GCP_PROJECT}" in text, text
    assert cluster.get("imagebuilds", "-n", ns)["items"] == []
    assert cluster.get("jobs", "-n", ns)["items"] == []
