"""Azure end to end: the operator as a process, real Packer in Jobs building through the TLS edge
against the Azure Resource Manager fake, whose VMs are booted machines in the lab. Builds publish
Compute Gallery image versions; validation boots each version in each region it is replicated to
and checks it over the network and SSH; channels move the channel tag and the definition's
latest; revocation, deletion, new Marketplace versions, killed runners and bad input each leave
the gallery and the subscription as they should."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from goldenimage import paths
from goldenimage.api import labels, names
from goldenimage.api.group import API_VERSION
from goldenimage.clouds.azure.kind import KIND, version_key
from goldenimage_dev import clouds
from goldenimage_dev.fakes.arm import compute
from goldenimage_dev.fakes.arm.fake import Arm
from goldenimage_dev.stack import Stack
from support import polling, procs
from support.builds import kill_runner, wait_built, wait_failed, wait_ready, wait_version
from support.cluster import Cluster, condition_of
from support.manifests import image_channel

pytestmark = pytest.mark.e2e

SUB, GROUP, GALLERY = clouds.AZURE_SUBSCRIPTION, clouds.AZURE_GROUP, clouds.AZURE_GALLERY
LOCATION, REPLICA = clouds.AZURE_LOCATION, "northeurope"
REGIONS = (LOCATION, REPLICA)
PUBLISHER, OFFER, SKU = clouds.AZURE_MARKETPLACE
BUILD_KEY = KIND.tag_key(labels.BUILD_ID)
REVOKED_KEY = KIND.tag_key(labels.REVOKED)
VERSION_TYPE = compute.GALLERY_VERSION.lower()

# The mark a minimal build bakes, and the check that finds it on the booted version.
MARK = ["echo baked-for-azure | sudo tee /etc/golden-mark"]
GOOD_CHECKS: list[dict[str, Any]] = [
    {"tcp": {"port": 22}},
    {"name": "mark", "command": {"run": "cat /etc/golden-mark"}},
]


# --- the fake, as the tests read it ----------------------------------------------------------


def arm(stack: Stack) -> Arm:
    return stack.clouds.arm


def definition(stack: Stack, name: str, regions_allowed: list[str] | None = None) -> str:
    """A gallery image definition of the test's own (versions are named `<version>.0.<attempt>`
    per image, so images sharing a definition would share names); its id."""
    arm(stack).add_gallery_image(
        SUB,
        GROUP,
        GALLERY,
        name,
        LOCATION,
        publisher="platform",
        offer=name,
        sku="debian-12",
        regions_allowed=regions_allowed,
    )
    return f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Compute/galleries/{GALLERY}/images/{name}"


def versions(stack: Stack, definition_id: str) -> dict[str, dict[str, Any]]:
    """The definition's versions as GET shows them, by name."""
    prefix = definition_id.lower() + "/versions/"
    return {v["name"]: v for v in arm(stack).resources(compute.GALLERY_VERSION) if v["id"].lower().startswith(prefix)}


def included(stack: Stack, definition_id: str) -> list[str]:
    """The definition's versions not excluded from latest: what competes for `latest`."""
    return sorted(
        name
        for name, v in versions(stack, definition_id).items()
        if not v["properties"]["publishingProfile"].get("excludeFromLatest")
    )


def latest(stack: Stack, definition_id: str) -> str | None:
    """What the definition's `latest` serves: its highest version not excluded from latest."""
    candidates = included(stack, definition_id)
    return max(candidates, key=version_key) if candidates else None


def carrying(stack: Stack, definition_id: str, key: str, value: str = "current") -> list[str]:
    return sorted(n for n, v in versions(stack, definition_id).items() if (v.get("tags") or {}).get(key) == value)


def resource_ids(stack: Stack) -> set[str]:
    return {r["id"].lower() for r in arm(stack).resources()}


def running_vms(stack: Stack) -> list[str]:
    """The fake's VMs that are machines running in the lab."""
    return sorted(n for n, m in list(stack.clouds.machines.machines.items()) if n.startswith("arm-") and m.running)


def nothing_new_but_versions(stack: Stack, before: set[str]) -> bool:
    """True when everything made since `before` is a gallery image version and no VM machine
    runs; an AssertionError naming what is left otherwise (polling.until reports the last)."""
    left = [
        f"{r['type']} {r['id']}"
        for r in arm(stack).resources()
        if r["id"].lower() not in before and r["type"].lower() != VERSION_TYPE
    ]
    if left:
        raise AssertionError(f"left in the fake: {left}")
    if machines := running_vms(stack):
        raise AssertionError(f"machines still running: {machines}")
    return True


# --- the cluster -----------------------------------------------------------------------------


def azure_image(
    name: str,
    definition_name: str,
    *,
    checks: list[dict[str, Any]] | None = None,
    provisioners: list[dict[str, Any]] | None = None,
    sku: str = SKU,
    **spec: Any,
) -> dict[str, Any]:
    """A GoldenImage with one Azure target building from Debian 12 into `definition_name`,
    replicated to a second region, with a minimal provisioner and checks that find it."""
    target = {
        "subscriptionId": SUB,
        "resourceGroup": GROUP,
        "location": LOCATION,
        "vmSize": "Standard_B1s",
        "source": {"marketplace": {"publisher": PUBLISHER, "offer": OFFER, "sku": sku}},
        "gallery": {"name": GALLERY, "imageDefinition": definition_name, "replicationRegions": [REPLICA]},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "GoldenImage",
        "metadata": {"name": name},
        "spec": {
            "targets": [{"name": "azure-we", "azure": target}],
            "provisioners": provisioners if provisioners is not None else [{"shell": {"inline": MARK}}],
            "validation": {"timeout": "5m", "checks": checks if checks is not None else GOOD_CHECKS},
            **spec,
        },
    }


def build_id(build: dict[str, Any]) -> str:
    return names.build_id(build["metadata"]["name"], build["metadata"]["uid"])


def gallery_version(build: dict[str, Any]) -> str:
    """The one gallery image version id the build recorded (the same in every region)."""
    (target,) = build["status"]["targets"]
    (ident,) = {a["id"] for a in target["artifacts"]}
    return str(ident)


def wait_published(stack: Stack, definition_id: str, tag: str, version: str) -> None:
    """Exactly `version` carries the channel tag and is the definition's latest, every other
    version excluded from latest."""
    polling.until(
        lambda: carrying(stack, definition_id, tag) == [version], what=f"only {version} to carry the tag {tag}"
    )
    polling.until(lambda: included(stack, definition_id) == [version], what=f"{version} alone to be included in latest")
    assert latest(stack, definition_id) == version


# --- the tests -------------------------------------------------------------------------------


def test_azure_example_builds_boots_validates_promotes_and_leaves_nothing(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    web_base = (
        f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Compute/galleries/{GALLERY}/images/web-base"
    )
    before = resource_ids(stack)
    cluster.kubectl("create", "serviceaccount", "packer-azure", "-n", ns)
    for path in ("web-baseline-playbook.yaml", "azure-web-base.yaml"):
        cluster.kubectl("apply", "-n", ns, "-f", str(paths.EXAMPLES / path))
    build = wait_built(cluster, ns, "web-base-azure-1")
    newest = max(["0.20250210.2019", "0.20250428.2097"], key=version_key)
    assert build["spec"]["sources"] == {"azure-we": f"{PUBLISHER}:{OFFER}:{SKU}:{newest}"}

    # One gallery image version, in both regions, replicated, carrying the build's tags.
    (target,) = build["status"]["targets"]
    ident = gallery_version(build)
    assert ident.lower() == f"{web_base}/versions/1.0.1".lower()
    assert sorted((a["region"], a["state"]) for a in target["artifacts"]) == [
        (REPLICA, "Completed"),
        (LOCATION, "Completed"),
    ]
    found = arm(stack).resource(ident)
    assert found is not None
    assert found["tags"][BUILD_KEY] == build_id(build)
    assert found["tags"]["Role"] == "web"
    assert found["properties"]["replicationStatus"]["aggregatedState"] == "Completed"
    regions = {r["name"].replace(" ", "").lower() for r in found["properties"]["publishingProfile"]["targetRegions"]}
    assert regions == set(REGIONS)

    # Validation booted the version in both regions and the baked web server answered.
    build = wait_ready(cluster, ns, "web-base-azure-1")
    results = {v["region"]: v for v in build["status"]["validation"]}
    assert set(results) == set(REGIONS)
    prefix = str(stack.clouds.lab.network.network_address).rsplit(".", 2)[0]
    for region in REGIONS:
        assert results[region]["phase"] == "Passed"
        checks = results[region]["checks"]
        assert [c["name"] for c in checks] == ["tcp-22", "http-80"] and all(c["passed"] for c in checks), checks
        assert checks[0]["message"].startswith(f"connected to {prefix}."), checks
    validated = condition_of(build, "Validated")
    assert validated and validated["status"] == "True"

    # The example's candidate channel tags it and makes it the definition's latest.
    assert wait_version(cluster, ns, "web-azure-candidate", 1) == "LatestValidated"
    wait_published(stack, web_base, "golden-channel-web-candidate", "1.0.1")
    published = cluster.get("configmap", "web-base-azure-candidate", "-n", ns)["data"]
    assert published["build"] == "web-base-azure-1"
    assert {a["id"] for a in json.loads(published["artifacts.json"])} == {ident}

    # Packer's temporary group, its VM, NIC, IP and disk, the managed image, and every
    # validation VM with its group: all gone, no machine left running.
    polling.until(lambda: nothing_new_but_versions(stack, before), what="the build's and validations' resources to go")
    assert set(versions(stack, web_base)) == {"1.0.1"}


def test_channel_moves_tag_and_latest_on_rebuild_rollback_and_revocation(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    defn = definition(stack, f"app-{ns}")
    tag = "golden-channel-app"
    channel = image_channel(
        "candidate", "app", publish={"azure": {"tag": {"key": tag, "value": "current"}, "galleryLatest": True}}
    )
    cluster.apply([azure_image("app", f"app-{ns}"), channel], ns)

    first = wait_ready(cluster, ns, "app-1")
    for result in first["status"]["validation"]:
        mark = [c for c in result["checks"] if c["name"] == "mark"]
        assert mark and mark[0]["passed"] and mark[0]["message"].endswith("exited 0: baked-for-azure"), mark
    assert wait_version(cluster, ns, "candidate", 1) == "LatestValidated"
    wait_published(stack, defn, tag, "1.0.1")

    # Version 2 by request: the tag and latest move to it; version 1 is excluded from latest.
    assert cluster.golden(ns, "rebuild", "app").returncode == 0
    wait_ready(cluster, ns, "app-2")
    wait_version(cluster, ns, "candidate", 2)
    wait_published(stack, defn, tag, "2.0.1")

    # Rollback pins version 1: tag and latest go back with it.
    rolled = cluster.golden(ns, "rollback", "candidate")
    assert rolled.returncode == 0, rolled.stderr
    assert wait_version(cluster, ns, "candidate", 1) == "Rollback"
    wait_published(stack, defn, tag, "1.0.1")

    # Unpinned, it returns to 2; revoking 2 moves it back to 1 and ends 2's life.
    cluster.kubectl("patch", "imagechannel", "candidate", "-n", ns, "--type=merge", "-p", '{"spec": {"version": null}}')
    wait_version(cluster, ns, "candidate", 2)
    wait_published(stack, defn, tag, "2.0.1")
    revoked = cluster.golden(ns, "revoke", "app-2", "--reason", "CVE-2026-1234")
    assert revoked.returncode == 0, revoked.stderr
    assert wait_version(cluster, ns, "candidate", 1) == "Revoked"
    wait_published(stack, defn, tag, "1.0.1")

    def deprecated() -> dict[str, Any] | None:
        found = versions(stack, defn)["2.0.1"]
        profile = found["properties"]["publishingProfile"]
        return found if profile.get("endOfLifeDate") and (found.get("tags") or {}).get(REVOKED_KEY) else None

    version_2 = polling.until(deprecated, what="version 2.0.1 to be revoked in the gallery")
    assert version_2["tags"][REVOKED_KEY] == "CVE-2026-1234"
    assert version_2["properties"]["publishingProfile"]["excludeFromLatest"] is True
    done = condition_of(cluster.get("imagebuild", "app-2", "-n", ns), "Deprecated")
    assert done and done["status"] == "True", done


def test_a_failing_check_blocks_promotion_and_leaves_no_vm(stack: Stack, cluster: Cluster, ns: str) -> None:
    defn = definition(stack, f"flaky-{ns}")
    before = resource_ids(stack)
    checks = [{"tcp": {"port": 22}}, {"tcp": {"port": 2999}, "timeout": "4s"}]
    channel = image_channel("candidate", "flaky", publish={"azure": {"galleryLatest": True}})
    cluster.apply([azure_image("flaky", f"flaky-{ns}", checks=checks), channel], ns)
    wait_built(cluster, ns, "flaky-1")

    def finished() -> dict[str, Any] | None:
        # Validated turns False with the first failure; the other region may still be at work.
        build = cluster.get_or_none("imagebuild", "flaky-1", ns)
        results = (build or {}).get("status", {}).get("validation") or []
        done = len(results) == len(REGIONS) and all(v["phase"] in ("Passed", "Failed") for v in results)
        return build if done else None

    build = polling.until(finished, timeout=600, what="flaky-1's validations to finish")
    validated = condition_of(build, "Validated")
    assert validated and validated["status"] == "False", validated
    ready = condition_of(build, "Ready")
    assert ready and ready["reason"] == "ValidationFailed" and "tcp-2999" in ready["message"], ready
    passed = {(v["region"], c["name"]): c["passed"] for v in build["status"]["validation"] for c in v["checks"]}
    assert passed == {(r, n): n == "tcp-22" for r in REGIONS for n in ("tcp-22", "tcp-2999")}

    def waiting() -> dict[str, Any] | None:
        found = cluster.get("imagechannel", "candidate", "-n", ns)
        condition = condition_of(found, "Ready")
        return found.get("status") if condition and condition["reason"] == "NoValidatedVersion" else None

    assert polling.until(waiting, what="the channel to report no validated version").get("current") is None
    assert latest(stack, defn) is None, "an unvalidated version became the definition's latest"
    polling.until(lambda: nothing_new_but_versions(stack, before), what="the validation VMs to go")


def test_deleting_a_build_removes_exactly_its_gallery_versions(stack: Stack, cluster: Cluster, ns: str) -> None:
    defn = definition(stack, f"doomed-{ns}")
    before = resource_ids(stack)
    cluster.apply(azure_image("doomed", f"doomed-{ns}", retention={"deletionPolicy": "Delete"}), ns)
    wait_built(cluster, ns, "doomed-1")
    assert cluster.golden(ns, "rebuild", "doomed").returncode == 0
    wait_built(cluster, ns, "doomed-2")
    assert set(versions(stack, defn)) == {"1.0.1", "2.0.1"}

    cluster.kubectl("delete", "imagebuild", "doomed-1", "-n", ns)
    polling.until(lambda: set(versions(stack, defn)) == {"2.0.1"}, what="only version 1.0.1 to be deleted")
    cluster.kubectl("delete", "goldenimage", "doomed", "-n", ns)
    polling.until(
        lambda: cluster.get_or_none("imagebuild", "doomed-2", ns) is None, timeout=120, what="the build's deletion"
    )
    assert versions(stack, defn) == {}
    # Validations still at work when their builds went leave nothing either.
    polling.until(lambda: nothing_new_but_versions(stack, before), what="the validation VMs to go")


def test_a_new_marketplace_version_makes_a_new_version(stack: Stack, cluster: Cluster, ns: str) -> None:
    sku = f"12-{ns}"[:40]
    arm(stack).add_marketplace_image(PUBLISHER, OFFER, sku, ["0.20250101.1"])
    definition(stack, f"fresh-{ns}")
    cluster.apply(azure_image("fresh", f"fresh-{ns}", sku=sku), ns)
    first = wait_built(cluster, ns, "fresh-1")
    assert first["spec"]["sources"] == {"azure-we": f"{PUBLISHER}:{OFFER}:{sku}:0.20250101.1"}

    # Version 0.20250301.1 is newer than 0.20250101.1 by number, whatever the order it is listed in.
    arm(stack).add_marketplace_image(PUBLISHER, OFFER, sku, ["0.20250301.1"])
    second = wait_built(cluster, ns, "fresh-2")
    assert second["spec"]["reason"] == "SourceChanged"
    assert second["spec"]["sources"] == {"azure-we": f"{PUBLISHER}:{OFFER}:{sku}:0.20250301.1"}
    builds = [b["metadata"]["name"] for b in cluster.get("imagebuilds", "-n", ns)["items"]]
    assert builds == ["fresh-1", "fresh-2"]


def _tagged_vms(stack: Stack, identity: str) -> list[str]:
    return [
        r["id"]
        for r in arm(stack).resources(compute.VM)
        if (r.get("tags") or {}).get(BUILD_KEY) == identity and r["properties"].get("provisioningState") == "Succeeded"
    ]


def test_a_killed_build_is_swept(stack: Stack, cluster: Cluster, ns: str) -> None:
    """SIGKILL (a crashed node): Packer cannot delete its temporary resource group, so the
    operator sweeps what the failed attempt left, by its build id, target and attempt."""
    definition(stack, f"killed-{ns}")
    before = resource_ids(stack)
    hang = [{"shell": {"inline": ["sleep 600"]}}]
    cluster.apply(azure_image("killed", f"killed-{ns}", provisioners=hang, build={"maxAttempts": 1}), ns)
    build = polling.until(lambda: cluster.get_or_none("imagebuild", "killed-1", ns), what="the ImageBuild")
    identity = build_id(build)
    polling.until(lambda: _tagged_vms(stack, identity), timeout=180, what="Packer's builder VM")
    polling.until(lambda: running_vms(stack), what="the builder VM's machine")
    uid = kill_runner(cluster, ns, "killed-1")
    failed = wait_failed(cluster, ns, "killed-1", timeout=300)
    assert "exit code 137" in failed["status"]["targets"][0]["message"]
    assert procs.in_container(uid) == []
    polling.until(lambda: nothing_new_but_versions(stack, before), timeout=120, what="the attempt's leftovers to go")


def _requests_for(stack: Stack, fragment: str) -> int:
    """How many GETs the fake answered for a path containing `fragment`."""
    return sum(1 for r in list(arm(stack).requests) if r["method"] == "GET" and fragment.lower() in r["path"].lower())


def test_a_missing_image_definition_is_reported_without_a_retry_storm(stack: Stack, cluster: Cluster, ns: str) -> None:
    missing = f"nowhere-{ns}"
    cluster.apply(azure_image("lost", missing), ns)

    def message() -> str | None:
        condition = condition_of(cluster.get_or_none("goldenimage", "lost", ns), "Ready")
        return str(condition["message"]) if condition and condition["reason"] == "SourceNotFound" else None

    text = polling.until(message, what="the image to say its definition does not exist")
    assert f"image definition {missing} of gallery {GALLERY}" in text and "does not exist" in text, text

    # The operator asks again at its resync, not in a loop: a few reads over several seconds.
    fragment = f"/images/{missing}"
    start, asked = time.monotonic(), _requests_for(stack, fragment)
    polling.until(lambda: _requests_for(stack, fragment) >= asked + 2, timeout=60, what="the operator to ask again")
    elapsed = time.monotonic() - start
    assert _requests_for(stack, fragment) - asked <= 2 + elapsed, "the definition is asked for in a loop"
    assert cluster.get("imagebuilds", "-n", ns)["items"] == []
    assert cluster.get("jobs", "-n", ns)["items"] == []


def test_a_replication_region_the_definition_refuses_fails_the_build_clearly_and_leaves_nothing(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    """Azure answers the version's PUT with InvalidParameter; the attempt fails with Azure's own
    words, and the builder VM, its group and the captured managed image are all gone."""
    definition_id = definition(stack, f"local-{ns}", regions_allowed=[LOCATION])
    before = resource_ids(stack)
    cluster.apply(azure_image("local", f"local-{ns}", build={"maxAttempts": 1}), ns)
    failed = wait_failed(cluster, ns, "local-1", timeout=420)
    message = failed["status"]["targets"][0]["message"]
    assert f"Replication to region '{REPLICA}' is not allowed" in message, message
    polling.until(lambda: nothing_new_but_versions(stack, before), timeout=120, what="the attempt's leftovers to go")
    assert versions(stack, definition_id) == {}
