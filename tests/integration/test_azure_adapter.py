"""The Azure adapter against the Azure Resource Manager fake, through the TLS edge with the real
SDKs at their real endpoints: source resolution, gallery image versions as artifacts (find,
check, revoke, delete), the work after a build, sweeps of what killed attempts and validations
left, validation VMs, publication of channel tags and the gallery's latest, and the refusals a
condition must explain. Synchronous and asynchronous long-running operations both.

Most tests boot nothing (the fake's Recorder); the one that runs commands over SSH boots real
machines and runs only inside the lab:
.venv/bin/python -m goldenimage_dev.machines lab -- .venv/bin/python -m pytest <this file>.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from pydantic import ValidationError

from goldenimage.api import labels
from goldenimage.api.errors import CloudError, CloudRefusedError, ForeignArtifactError, SourceNotFoundError
from goldenimage.api.goldenimage import Target, Validation
from goldenimage.api.imagechannel import AzurePublish, Tag
from goldenimage.clouds.azure.adapter import AzureApi
from goldenimage.clouds.azure.kind import KIND
from goldenimage.clouds.base import CloudResource, Instance, Pointer, PublishScope
from goldenimage_dev.edge import Edge
from goldenimage_dev.fakes.arm import Arm
from goldenimage_dev.fakes.hypervisor import Hypervisor, Recorder
from support import lab as labs
from support import polling

pytestmark = pytest.mark.integration

TENANT = "11111111-1111-1111-1111-111111111111"
SUB = "00000000-0000-0000-0000-000000000000"
OTHER_SUB = "00000000-0000-0000-0000-0000000000cc"
CLIENT, SECRET = "33333333-3333-3333-3333-333333333333", "builder-secret"
CREDENTIALS = {"ARM_CLIENT_ID": CLIENT, "ARM_CLIENT_SECRET": SECRET, "ARM_TENANT_ID": TENANT}
GROUP = "rg-images"
GALLERY = "platform_gallery"
DEFINITION = "web-base"
LOCATION, REPLICA = "westeurope", "northeurope"
MARKETPLACE = ("Debian", "debian-12", "12-gen2")
MARKETPLACE_VERSIONS = ("0.20250210.2019", "0.9.0", "0.20250428.2097")
BUILD_ID = "web-base-7-1a2b3c4d"
SCOPE = PublishScope(namespace="platform", image="web-base", channel="candidate")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk1Zm9ZZHVtbXlrZXlmb3J0ZXN0c29ubHkxMjM0NTY3 test"

BUILD_KEY = KIND.tag_key(labels.BUILD_ID)
REVOKED_KEY = KIND.tag_key(labels.REVOKED)


def _target(**azure: Any) -> Target:
    spec: dict[str, Any] = {
        "subscriptionId": SUB,
        "resourceGroup": GROUP,
        "location": LOCATION,
        "vmSize": "Standard_B1s",
        "source": {"marketplace": dict(zip(("publisher", "offer", "sku"), MARKETPLACE, strict=True))},
        "gallery": {"name": GALLERY, "imageDefinition": DEFINITION, "replicationRegions": [REPLICA]},
    }
    spec.update(azure)
    return Target.model_validate({"name": "azure-we", "azure": spec})


def _tags(build_id: str = BUILD_ID, attempt: int = 1, image: str = "web-base", version: int = 7) -> dict[str, str]:
    """What the renderer tags everything a build makes with, spelled for Azure."""
    return KIND.tags(
        {
            labels.BUILD_ID: build_id,
            labels.IMAGE: image,
            labels.NAMESPACE: "platform",
            labels.VERSION: str(version),
            labels.TARGET: "azure-we",
            labels.MANAGED_BY: labels.MANAGER,
            labels.ATTEMPT: str(attempt),
        }
    )


@dataclass
class Build:
    version: str  # the gallery image version's id
    image: str  # the intermediate managed image's id
    group: str  # Packer's temporary resource group
    vm: str


@dataclass
class Cloud:
    arm: Arm
    api: AzureApi
    compute: ComputeManagementClient
    network: NetworkManagementClient
    resources: ResourceManagementClient

    def version_id(self, version: str, definition: str = DEFINITION) -> str:
        return (
            f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Compute/galleries/{GALLERY}"
            f"/images/{definition}/versions/{version}"
        )

    def version(self, name: str, definition: str = DEFINITION) -> Any:
        return self.compute.gallery_image_versions.get(GROUP, GALLERY, definition, name)

    def exists(self, resource_id: str) -> bool:
        return self.arm.resource(resource_id) is not None

    def requests(self, method: str | None = None) -> int:
        return sum(
            1 for r in self.arm.requests if r["host"] == "management.azure.com" and method in (None, r["method"])
        )

    def network_for(self, group: str, name: str, tags: dict[str, str]) -> str:
        """A VM's network interface with a public IP, in `group`; its id."""
        vnet = self.network.virtual_networks.begin_create_or_update(
            group,
            f"{name}-vnet",
            {
                "location": LOCATION,
                "tags": tags,
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                    "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}],
                },
            },
        ).result()
        ip = self.network.public_ip_addresses.begin_create_or_update(
            group,
            f"{name}-ip",
            {"location": LOCATION, "tags": tags, "properties": {"publicIPAllocationMethod": "Static"}},
        ).result()
        nic = self.network.network_interfaces.begin_create_or_update(
            group,
            f"{name}-nic",
            {
                "location": LOCATION,
                "tags": tags,
                "properties": {
                    "ipConfigurations": [
                        {
                            "name": "ip",
                            "properties": {"subnet": {"id": vnet.subnets[0].id}, "publicIPAddress": {"id": ip.id}},
                        }
                    ]
                },
            },
        ).result()
        return str(nic.id)

    def builder_vm(self, group: str, name: str, tags: dict[str, str], image: dict[str, str] | None = None) -> Any:
        nic = self.network_for(group, name, tags)
        publisher, offer, sku = MARKETPLACE
        reference = image or {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"}
        return self.compute.virtual_machines.begin_create_or_update(
            group,
            name,
            {
                "location": LOCATION,
                "tags": tags,
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_B1s"},
                    "storageProfile": {"imageReference": reference, "osDisk": {"createOption": "FromImage"}},
                    "osProfile": {
                        "computerName": name,
                        "adminUsername": "packer",
                        "linuxConfiguration": {
                            "disablePasswordAuthentication": True,
                            "ssh": {"publicKeys": [{"path": "/home/packer/.ssh/authorized_keys", "keyData": SSH_KEY}]},
                        },
                    },
                    "networkProfile": {"networkInterfaces": [{"id": nic}]},
                },
            },
        ).result()

    def build(
        self,
        version: str = "7.0.1",
        *,
        build_id: str = BUILD_ID,
        attempt: int = 1,
        definition: str = DEFINITION,
        image: str = "web-base",
        regions: tuple[str, ...] = (LOCATION, REPLICA),
        exclude_from_latest: bool = True,
        killed: bool = False,
    ) -> Build:
        """What Packer 1.6.6 does, through the SDK: a tagged temporary resource group with the
        builder VM, deallocated and generalized, captured as a tagged managed image, published as
        a tagged gallery image version; the group deleted unless the build was `killed`."""
        tags = _tags(build_id, attempt, image)
        group = f"pkr-Resource-Group-{build_id}-{attempt}"
        self.resources.resource_groups.create_or_update(group, {"location": LOCATION, "tags": tags})
        vm = self.builder_vm(group, "pkrvm", tags)
        self.compute.virtual_machines.begin_deallocate(group, "pkrvm").result()
        self.compute.virtual_machines.generalize(group, "pkrvm")
        managed = self.compute.images.begin_create_or_update(
            GROUP,
            f"{build_id}-a{attempt}",
            {"location": LOCATION, "tags": tags, "properties": {"sourceVirtualMachine": {"id": vm.id}}},
        ).result()
        made = self.compute.gallery_image_versions.begin_create_or_update(
            GROUP,
            GALLERY,
            definition,
            version,
            {
                "location": LOCATION,
                "tags": tags,
                "properties": {
                    "publishingProfile": {
                        "targetRegions": [{"name": r} for r in regions],
                        "excludeFromLatest": exclude_from_latest,
                    },
                    "storageProfile": {"source": {"id": managed.id}},
                },
            },
        ).result()
        if not killed:
            self.resources.resource_groups.begin_delete(group).result()
        return Build(str(made.id), str(managed.id), group, str(vm.id))


def seed(arm: Arm) -> None:
    """What the local stack seeds for the examples."""
    arm.add_subscription(SUB, TENANT)
    arm.add_subscription(OTHER_SUB, TENANT, display_name="another subscription")
    arm.add_principal(TENANT, CLIENT, secret=SECRET)
    arm.add_resource_group(SUB, GROUP, LOCATION)
    arm.add_gallery(SUB, GROUP, GALLERY, LOCATION)
    for definition in ("web-base", "web-multicloud"):
        arm.add_gallery_image(
            SUB,
            GROUP,
            GALLERY,
            definition,
            LOCATION,
            publisher="platform",
            offer=definition,
            sku="debian-12",
            regions_allowed=(LOCATION, REPLICA),
        )
    arm.add_marketplace_image(*MARKETPLACE, MARKETPLACE_VERSIONS)


def _start(hypervisor: Hypervisor, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    arm = Arm(hypervisor)
    seed(arm)
    edge = Edge.start(directory / "edge", arm.routes)
    for name in ("ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in edge.env(bypass=["10.0.0.0/8"]).items():
        monkeypatch.setenv(name, value)
    credential = ClientSecretCredential(TENANT, CLIENT, SECRET)
    clients = (
        ComputeManagementClient(credential, SUB),
        NetworkManagementClient(credential, SUB),
        ResourceManagementClient(credential, SUB),
    )
    try:
        yield Cloud(arm, AzureApi(credentials=CREDENTIALS), *clients)
    finally:
        for client in clients:
            client.close()
        credential.close()
        edge.stop()
        arm.close()
    assert edge.refused == [], "a client of the edge asked for a host it does not route"


@pytest.fixture(params=["sync", "async"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """Answered at once, or as asynchronous operations polled until done."""
    for started in _start(Recorder(), tmp_path, monkeypatch):
        started.arm.settings.lro = request.param
        yield started


@pytest.fixture
def sync_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """Answered at once (asynchronous operations poll once a second: kept to the tests of both)."""
    yield from _start(Recorder(), tmp_path, monkeypatch)


# --- sources -------------------------------------------------------------------------------


def test_marketplace_latest_resolves_to_the_highest_version_by_number(sync_cloud: Cloud) -> None:
    api = sync_cloud.api
    assert api.resolve_source(_target()) == "Debian:debian-12:12-gen2:0.20250428.2097"
    # A new Marketplace version is a new source (a new build with onSourceChange).
    sync_cloud.arm.add_marketplace_image("Debian", "debian-12", "12-gen2", ["0.20250601.2100"], locations=[REPLICA])
    assert api.resolve_source(_target()) == "Debian:debian-12:12-gen2:0.20250428.2097"  # not where it builds
    sync_cloud.arm.state.marketplace[0].versions.append("0.20250601.2100")
    assert api.resolve_source(_target()) == "Debian:debian-12:12-gen2:0.20250601.2100"


def test_a_pinned_marketplace_version_is_checked_and_kept(sync_cloud: Cloud) -> None:
    pinned = {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "0.9.0"}
    assert sync_cloud.api.resolve_source(_target(source={"marketplace": pinned})) == "Debian:debian-12:12-gen2:0.9.0"
    with pytest.raises(SourceNotFoundError, match=r"Debian:debian-12:12-gen2:0\.8\.0 does not exist in westeurope"):
        sync_cloud.api.resolve_source(_target(source={"marketplace": {**pinned, "version": "0.8.0"}}))
    with pytest.raises(SourceNotFoundError, match="Debian:debian-12:11:latest has no version in westeurope"):
        sync_cloud.api.resolve_source(_target(source={"marketplace": {**pinned, "sku": "11", "version": "latest"}}))


def test_a_gallery_source_is_used_as_written_once_it_is_replicated_where_the_build_runs(sync_cloud: Cloud) -> None:
    built = sync_cloud.build("1.0.1", build_id="base-1-abc")
    api = sync_cloud.api
    assert api.resolve_source(_target(source={"galleryImageVersionId": built.version})) is None
    missing = sync_cloud.version_id("9.9.9")
    with pytest.raises(SourceNotFoundError, match=r"9\.9\.9 does not exist"):
        api.resolve_source(_target(source={"galleryImageVersionId": missing}))
    only_here = sync_cloud.build("1.0.2", build_id="base-2-abc", regions=(LOCATION,))
    elsewhere = _target(location=REPLICA, source={"galleryImageVersionId": only_here.version})
    with pytest.raises(SourceNotFoundError, match="not replicated to northeurope, where the build runs"):
        api.resolve_source(elsewhere)


def test_a_destination_definition_that_does_not_exist_is_said_before_any_build(sync_cloud: Cloud) -> None:
    target = _target(gallery={"name": GALLERY, "imageDefinition": "nope", "replicationRegions": []})
    with pytest.raises(
        SourceNotFoundError, match=r"image definition nope of gallery platform_gallery .* does not exist"
    ):
        sync_cloud.api.resolve_source(target)
    with pytest.raises(SourceNotFoundError, match="image definition web-base of gallery missing_gallery"):
        sync_cloud.api.resolve_source(
            _target(gallery={"name": "missing_gallery", "imageDefinition": "web-base", "replicationRegions": []})
        )


# --- credentials and refusals ----------------------------------------------------------


def test_refused_credentials_and_an_incomplete_secret_are_refusals(sync_cloud: Cloud) -> None:
    wrong = AzureApi(credentials={**CREDENTIALS, "ARM_CLIENT_SECRET": "not-it"})
    with pytest.raises(CloudRefusedError, match="credentials were refused"):
        wrong.resolve_source(_target())
    partial = AzureApi(credentials={"ARM_CLIENT_ID": CLIENT, "ARM_TENANT_ID": TENANT})
    with pytest.raises(CloudRefusedError, match="lacks ARM_CLIENT_SECRET"):
        partial.resolve_source(_target())


def test_the_environment_of_a_build_job_is_its_identity(sync_cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**CREDENTIALS, "ARM_SUBSCRIPTION_ID": SUB}.items():
        monkeypatch.setenv(name, value)
    api = AzureApi(credentials={})
    assert api.resolve_source(_target()) == "Debian:debian-12:12-gen2:0.20250428.2097"
    assert api.arm.default_subscription == SUB


def test_a_denied_permission_is_a_refusal_without_a_retry_storm(sync_cloud: Cloud) -> None:
    sync_cloud.arm.deny(CLIENT, "Microsoft.Compute/galleries/*")
    before = sync_cloud.requests()
    with pytest.raises(CloudRefusedError, match=r"AuthorizationFailed.*lack this permission"):
        sync_cloud.api.resolve_source(_target())
    assert sync_cloud.requests() - before == 1


def test_a_core_quota_refuses_the_validation_vm_and_leaves_nothing(sync_cloud: Cloud) -> None:
    built = sync_cloud.build()
    sync_cloud.arm.set_core_quota(SUB, LOCATION, 0)
    with pytest.raises(CloudRefusedError, match="quota"):
        sync_cloud.api.launch(_target(), LOCATION, built.version, None, {labels.BUILD_ID: BUILD_ID})
    assert _groups(sync_cloud, "goldenimage-validate-") == []


# --- artifacts -------------------------------------------------------------------------


def test_artifacts_are_found_by_the_build_id_once_per_replication_region(sync_cloud: Cloud) -> None:
    built = sync_cloud.build()
    other = sync_cloud.build("8.0.1", build_id="web-base-8-ffff0000")
    found = sync_cloud.api.find_artifacts(BUILD_ID, [LOCATION, REPLICA])
    assert sorted((r.kind, r.region, r.id.lower()) for r in found) == [
        ("image-version", REPLICA, built.version.lower()),
        ("image-version", LOCATION, built.version.lower()),
    ]
    assert {r.id for r in sync_cloud.api.find_artifacts("web-base-8-ffff0000", [LOCATION])} == {other.version}


def test_deleting_an_artifact_needs_the_build_id_and_takes_the_managed_image(cloud: Cloud) -> None:
    built = cloud.build()
    with pytest.raises(ForeignArtifactError, match="does not carry"):
        cloud.api.delete_artifact(LOCATION, built.version, "someone-else-1-abc")
    assert cloud.exists(built.version)

    deleted = cloud.api.delete_artifact(LOCATION, built.version, BUILD_ID)
    assert {(r.kind, r.id.lower()) for r in deleted} == {
        ("image-version", built.version.lower()),
        ("managed-image", built.image.lower()),
    }
    assert not cloud.exists(built.version) and not cloud.exists(built.image)
    # Asked again for the next region: already gone, which counts as deleted.
    assert cloud.api.delete_artifact(REPLICA, built.version, BUILD_ID) == []


def test_missing_artifacts_are_gone_or_not_replicated_there(sync_cloud: Cloud) -> None:
    kept = sync_cloud.build("7.0.1")
    gone = sync_cloud.build("7.0.2", attempt=2)
    sync_cloud.compute.gallery_image_versions.begin_delete(GROUP, GALLERY, DEFINITION, "7.0.2").result()
    asked = [
        (LOCATION, kept.version),
        (REPLICA, kept.version),
        ("eastus", kept.version),
        (LOCATION, gone.version),
        (LOCATION, kept.image),  # a managed image an older operator recorded: still there
        (LOCATION, gone.image + "-never"),
    ]
    assert sync_cloud.api.missing_artifacts(asked) == {
        ("eastus", kept.version),
        (LOCATION, gone.version),
        (LOCATION, gone.image + "-never"),
    }


def test_after_the_build_the_version_stays_out_of_latest_and_the_managed_image_goes(sync_cloud: Cloud) -> None:
    # As if Packer had ignored shared_gallery_image_version_exclude_from_latest.
    built = sync_cloud.build(exclude_from_latest=False)
    done = sync_cloud.api.after_build(_target(), [(LOCATION, built.version), (REPLICA, built.version)])
    assert len(done) == 2 and "excluded" in done[0] and "deleted the intermediate managed image" in done[1]
    assert sync_cloud.version("7.0.1").publishing_profile.exclude_from_latest is True
    assert not sync_cloud.exists(built.image)
    # The version still boots: it holds its own copy of the image.
    sync_cloud.builder_vm(GROUP, "from-version", {}, image={"id": built.version})

    with pytest.raises(CloudError, match="does not exist"):
        sync_cloud.api.after_build(_target(), [(LOCATION, sync_cloud.version_id("9.9.9"))])


def test_revocation_tags_excludes_and_ends_the_version_once(cloud: Cloud) -> None:
    built = cloud.build()
    cloud.compute.gallery_image_versions.begin_update(
        GROUP, GALLERY, DEFINITION, "7.0.1", {"properties": {"publishingProfile": {"excludeFromLatest": False}}}
    ).result()
    assert cloud.api.deprecate(LOCATION, built.version, "CVE-2026-1234 in openssl") is None
    version = cloud.version("7.0.1")
    assert version.tags[REVOKED_KEY] == "CVE-2026-1234 in openssl"
    assert version.tags[BUILD_KEY] == BUILD_ID  # the build's own tags stay
    assert version.publishing_profile.exclude_from_latest is True
    end = version.publishing_profile.end_of_life_date
    assert timedelta(0) < end - datetime.now(UTC) <= timedelta(minutes=6)
    # Called again for the next region: nothing left to change.
    writes = cloud.requests("PATCH")
    assert cloud.api.deprecate(REPLICA, built.version, "CVE-2026-1234 in openssl") is None
    assert cloud.requests("PATCH") == writes
    assert cloud.api.deprecate(LOCATION, cloud.version_id("9.9.9"), "gone") is None


# --- leftovers -------------------------------------------------------------------------


def _groups(cloud: Cloud, prefix: str) -> list[str]:
    return sorted(str(g.name) for g in cloud.resources.resource_groups.list() if str(g.name).startswith(prefix))


def test_a_sweep_takes_only_its_attempt(cloud: Cloud) -> None:
    killed = cloud.build("7.0.1", attempt=1, killed=True)
    running = cloud.build("7.0.2", attempt=2, killed=True)
    other = cloud.build("8.0.1", build_id="web-base-8-ffff0000", killed=True)

    found = {(r.kind, r.id.lower()) for r in cloud.api.leftovers(BUILD_ID, [LOCATION], "azure-we", 1)}
    assert found == {
        ("resource-group", f"/subscriptions/{SUB}/resourcegroups/{killed.group}".lower()),
        ("managed-image", killed.image.lower()),
        ("image-version", killed.version.lower()),
    }
    swept = cloud.api.sweep(BUILD_ID, [LOCATION], "azure-we", 1)
    assert {r.kind for r in swept} == {"resource-group", "managed-image", "image-version"}
    assert not any(cloud.exists(x) for x in (killed.vm, killed.image, killed.version))
    assert all(cloud.exists(x) for x in (running.vm, running.image, running.version, other.vm, other.version))
    assert cloud.api.leftovers(BUILD_ID, [LOCATION], "azure-we", 1) == []

    # The whole build (its ImageBuild deleted): temporary resources only, never a recorded version.
    cloud.api.sweep(BUILD_ID, [LOCATION, REPLICA], "azure-we")
    assert not cloud.exists(running.vm) and not cloud.exists(running.image)
    assert cloud.exists(running.version) and cloud.exists(other.vm)


def test_the_os_disk_packer_leaks_is_tagged_while_it_builds_and_swept(sync_cloud: Cloud) -> None:
    # build_resource_group_name: Packer builds in an existing group and deletes all but the disk.
    tags = _tags(attempt=3)
    vm = sync_cloud.builder_vm(GROUP, "pkrvmleak", tags)
    disk = str(vm.storage_profile.os_disk.managed_disk.id)
    watch = sync_cloud.api.build_watcher(_target(), BUILD_ID, "3")
    assert watch is not None
    watch("==> azure-arm.azure-we:  -> ComputeName       : 'pkrvmleak'")
    watch(f"==> azure-arm.azure-we:  -> Managed OS Disk   : '{disk}'")
    assert sync_cloud.resources.tags.get_at_scope(disk).properties.tags[BUILD_KEY] == BUILD_ID
    sync_cloud.compute.virtual_machines.begin_delete(GROUP, "pkrvmleak").result()
    for name in ("pkrvmleak-nic", "pkrvmleak-ip"):
        kind = "network_interfaces" if name.endswith("nic") else "public_ip_addresses"
        getattr(sync_cloud.network, kind).begin_delete(GROUP, name).result()

    found = {(r.kind, r.id.lower()) for r in sync_cloud.api.leftovers(BUILD_ID, [LOCATION], "azure-we", 3)}
    assert ("disk", disk.lower()) in found
    sync_cloud.api.sweep(BUILD_ID, [LOCATION], "azure-we", 3)
    assert not sync_cloud.exists(disk)
    assert sync_cloud.exists(f"/subscriptions/{SUB}/resourceGroups/{GROUP}")  # the group is not the build's


def test_a_builder_vm_outside_a_temporary_group_goes_with_its_os_disk(sync_cloud: Cloud) -> None:
    vm = sync_cloud.builder_vm(GROUP, "pkrvmkilled", _tags(attempt=4))
    disk = str(vm.storage_profile.os_disk.managed_disk.id)
    swept = sync_cloud.api.sweep(BUILD_ID, [LOCATION], "azure-we", 4)
    assert ("disk", disk.lower()) in {(r.kind, r.id.lower()) for r in swept}
    assert not sync_cloud.exists(str(vm.id)) and not sync_cloud.exists(disk)


def test_leftovers_are_searched_in_every_subscription_the_credentials_see(sync_cloud: Cloud) -> None:
    other = ResourceManagementClient(ClientSecretCredential(TENANT, CLIENT, SECRET), OTHER_SUB)
    other.resource_groups.create_or_update("pkr-Resource-Group-elsewhere", {"location": LOCATION, "tags": _tags()})
    found = sync_cloud.api.leftovers(BUILD_ID, [LOCATION], "azure-we", 1)
    assert [(r.kind, r.id) for r in found] == [
        ("resource-group", f"/subscriptions/{OTHER_SUB}/resourceGroups/pkr-Resource-Group-elsewhere")
    ]
    other.close()


# --- validation VMs --------------------------------------------------------------------


def _validation_tags() -> dict[str, str]:
    return {
        labels.BUILD_ID: BUILD_ID,
        labels.TARGET: "azure-we",
        labels.ROLE: labels.ROLE_VALIDATION,
        labels.MANAGED_BY: labels.MANAGER,
        "Name": "validate-web-base-7-azure-we",
    }


def _until_ready(api: AzureApi, instance: Instance, timeout: float = 120) -> Instance:
    ready: Instance = polling.until(lambda: api.ready(instance), timeout=timeout, what=f"{instance.id} to be ready")
    return ready


def test_a_validation_vm_gets_a_group_of_its_own_and_leaves_nothing(cloud: Cloud) -> None:
    built = cloud.build()
    validation = Validation.model_validate({"checks": [{"tcp": {"port": 22}}, {"http": {"port": 8080}}]})
    instance = cloud.api.launch(_target(), REPLICA, built.version, validation, _validation_tags())
    assert instance.public and instance.region == REPLICA
    ready = _until_ready(cloud.api, instance)
    assert ready.address and ready.address.startswith("10.250.0.")

    group = instance.id.split("/")[4]
    assert group.startswith(f"goldenimage-validate-{BUILD_ID}-")
    vm = cloud.compute.virtual_machines.get(group, "validate")
    assert vm.tags == KIND.tags(_validation_tags())
    assert vm.storage_profile.image_reference.id == built.version
    rules = cloud.network.network_security_groups.get(group, "validate-nsg").security_rules
    assert sorted(r.destination_port_range for r in rules) == ["22", "8080"]
    groups = [r for r in cloud.api.leftovers(BUILD_ID, [REPLICA], "azure-we") if r.kind == "resource-group"]
    assert groups == [CloudResource("resource-group", REPLICA, f"/subscriptions/{SUB}/resourceGroups/{group}")]

    cloud.api.terminate(ready)
    assert _groups(cloud, "goldenimage-validate-") == []
    assert [r["type"] for r in cloud.arm.resources() if group.lower() in r["id"].lower()] == []
    hypervisor = cloud.arm.machines.hypervisor
    assert isinstance(hypervisor, Recorder) and hypervisor.running == {}
    cloud.api.terminate(ready)  # already gone: terminated all the same
    with pytest.raises(CloudError, match="is gone"):
        cloud.api.ready(instance)


def test_a_version_not_replicated_to_the_region_cannot_boot_and_leaves_nothing(sync_cloud: Cloud) -> None:
    built = sync_cloud.build(regions=(LOCATION,))
    with pytest.raises(CloudRefusedError, match="not replicated"):
        sync_cloud.api.launch(_target(), REPLICA, built.version, None, _validation_tags())
    assert _groups(sync_cloud, "goldenimage-validate-") == []


def test_commands_run_over_ssh_on_the_validation_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = labs.require()
    from goldenimage_dev.machines import images
    from goldenimage_dev.machines.hypervisor import Machines

    images.ensure("base", apt_proxy=lab.apt_proxy)
    machines = Machines(tmp_path / "machines")
    try:
        for cloud in _start(machines, tmp_path, monkeypatch):
            built = cloud.build()
            target = _target()
            instance = cloud.api.launch(target, LOCATION, built.version, None, _validation_tags())
            try:
                ready = _until_ready(cloud.api, instance)
                assert cloud.api.run_command(ready, "echo hello; id -u", 60) == (0, "hello\n0")
                code, output = cloud.api.run_command(ready, "echo broken >&2; exit 3", 60)
                assert (code, output) == (3, "broken")
            finally:
                cloud.api.terminate(instance)
            with pytest.raises(CloudError, match="no SSH key"):
                cloud.api.run_command(ready, "true", 10)
            assert [n for n in machines.machines if "validate" in n] == []
    finally:
        machines.close()


# --- publication -----------------------------------------------------------------------


def _pointers(*versions: str, target: str = "azure-we") -> list[Pointer]:
    return [Pointer(target=target, region=region, image=v) for v in versions for region in (LOCATION, REPLICA)]


def _latest(cloud: Cloud, definition: str = DEFINITION) -> str | None:
    """What the definition's `latest` serves: the highest version not excluded."""
    versions = cloud.compute.gallery_image_versions.list_by_gallery_image(GROUP, GALLERY, definition)
    included = [v.name for v in versions if not v.publishing_profile.exclude_from_latest]
    return max(included, key=lambda n: tuple(int(p) for p in n.split("."))) if included else None


def test_the_channel_tag_moves_to_the_current_version(sync_cloud: Cloud) -> None:
    v1, v2 = sync_cloud.build("7.0.1"), sync_cloud.build("8.0.1", build_id="web-base-8-ffff0000")
    section = AzurePublish.model_validate({"tag": {"key": "golden-channel/candidate", "value": "current"}})
    key = "golden-channel_candidate"
    changes = sync_cloud.api.publish(SCOPE, section, _pointers(v1.version), [])
    assert changes == [f"tag {key}=current on {v1.version}"]
    assert sync_cloud.version("7.0.1").tags[key] == "current"
    assert sync_cloud.api.publish(SCOPE, section, _pointers(v1.version), _pointers(v1.version)) == []

    changes = sync_cloud.api.publish(SCOPE, section, _pointers(v2.version), _pointers(v1.version))
    assert changes == [f"tag {key}=current on {v2.version}", f"tag {key}=current removed from {v1.version}"]
    assert key not in sync_cloud.version("7.0.1").tags and sync_cloud.version("8.0.1").tags[key] == "current"
    assert sync_cloud.version("7.0.1").tags[BUILD_KEY] == BUILD_ID

    # A version of another image is never tagged, and the operator's own keys are not for channels.
    foreign = sync_cloud.build("9.0.1", build_id="other-9-abc", image="other")
    with pytest.raises(CloudError, match="is not one of platform/web-base"):
        sync_cloud.api.publish(SCOPE, section, _pointers(foreign.version), _pointers(v2.version))
    # Admission refuses such a key; the publisher refuses it too (an object stored before the rule).
    with pytest.raises(ValidationError, match="are the operator's"):
        AzurePublish.model_validate({"tag": {"key": labels.BUILD_ID, "value": "x"}})
    taken = AzurePublish.model_construct(tag=Tag.model_construct(key=labels.BUILD_ID, value="x"))
    with pytest.raises(CloudError, match="operator's own"):
        sync_cloud.api.publish(SCOPE, taken, _pointers(v2.version), [])


def test_gallery_latest_follows_promotion_and_rollback(cloud: Cloud) -> None:
    v1 = cloud.build("7.0.1")
    v2 = cloud.build("8.0.1", build_id="web-base-8-ffff0000")
    unvalidated = cloud.build("9.0.1", build_id="web-base-9-eeee0000")
    section = AzurePublish.model_validate({"galleryLatest": True})
    assert _latest(cloud) is None  # every build is created excluded

    assert cloud.api.publish(SCOPE, section, _pointers(v1.version), []) == [
        f"{v1.version} is the latest of its image definition"
    ]
    assert _latest(cloud) == "7.0.1"
    cloud.api.publish(SCOPE, section, _pointers(v2.version), _pointers(v1.version))
    assert _latest(cloud) == "8.0.1"
    assert cloud.version("7.0.1").publishing_profile.exclude_from_latest is True
    # Rollback: the older version is included before the newer one is excluded.
    changes = cloud.api.publish(SCOPE, section, _pointers(v1.version), _pointers(v2.version))
    assert changes == [
        f"{v1.version} is the latest of its image definition",
        f"{v2.version} excluded from the latest of its image definition",
    ]
    assert _latest(cloud) == "7.0.1"
    assert cloud.version("9.0.1").publishing_profile.exclude_from_latest is True
    # The definition's id boots what latest serves.
    booted = cloud.builder_vm(GROUP, "consumer", {}, image={"id": v1.version.rsplit("/versions/", 1)[0]})
    assert booted.provisioning_state == "Succeeded"
    del unvalidated

    # The channel leaves the definition: nothing of the image is its latest any more.
    multicloud = cloud.build("1.0.1", build_id="web-base-10-dddd0000", definition="web-multicloud")
    cloud.api.publish(SCOPE, section, _pointers(multicloud.version), _pointers(v1.version))
    assert _latest(cloud) is None and _latest(cloud, "web-multicloud") == "1.0.1"


def test_gallery_latest_leaves_a_definition_alone_when_others_compete_for_it(sync_cloud: Cloud) -> None:
    mine = sync_cloud.build("7.0.1")
    sync_cloud.build("9.0.1", build_id="other-9-abc", image="other", exclude_from_latest=False)
    section = AzurePublish.model_validate({"galleryLatest": True})
    with pytest.raises(CloudError, match=r"versions 9\.0\.1 that are not platform/web-base's"):
        sync_cloud.api.publish(SCOPE, section, _pointers(mine.version), [])
    assert sync_cloud.version("7.0.1").publishing_profile.exclude_from_latest is True
    two = sync_cloud.build("7.0.2", attempt=2)
    with pytest.raises(CloudError, match="its latest can be only one of them"):
        sync_cloud.api.publish(SCOPE, section, _pointers(mine.version) + _pointers(two.version, target="azure-ne"), [])


def test_a_missing_current_version_fails_the_publication(sync_cloud: Cloud) -> None:
    section = AzurePublish.model_validate({"tag": {"key": "golden", "value": "current"}, "galleryLatest": True})
    with pytest.raises(CloudError, match="does not exist"):
        sync_cloud.api.publish(SCOPE, section, _pointers(sync_cloud.version_id("7.0.9")), [])
    with pytest.raises(ResourceNotFoundError):
        sync_cloud.version("7.0.9")
