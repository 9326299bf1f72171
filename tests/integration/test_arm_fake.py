"""The Azure Resource Manager fake through the TLS edge, driven by what will use it: the Azure
SDKs at their real endpoints (azure-identity, azure-mgmt-compute, -network, -resource), and
Debian's Packer 1.6.6 `azure-arm` builder inside a network namespace with loopback only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from goldenimage_dev import processes
from goldenimage_dev.edge import Edge
from goldenimage_dev.fakes.arm import Arm, Principal
from goldenimage_dev.fakes.arm.sshd import RecordingSshServer
from goldenimage_dev.fakes.hypervisor import Recorder
from support import components, procs
from support.polling import until

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-0000000000bb"
TENANT = "00000000-0000-0000-0000-0000000000aa"
CLIENT = "00000000-0000-0000-0000-000000000001"
SECRET = "fake-secret"
LOCATION = "westeurope"
REPLICA = "northeurope"
GALLERY_RG = "gallery-rg"
GALLERY = "golden_gallery"
DEFINITION = "golden-linux"
BUILD_ID = "goldenimage.io_build-id"
UBUNTU = ("Canonical", "UbuntuServer", "18.04-LTS")
UBUNTU_VERSIONS = ("18.04.202001010", "18.04.202401010", "18.04.202312050")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk1Zm9ZZHVtbXlrZXlmb3J0ZXN0c29ubHkxMjM0NTY3 test"
MANAGEMENT = "https://management.azure.com"


@dataclass
class Cloud:
    arm: Arm
    machines: Recorder
    edge: Edge
    principal: Principal
    compute: ComputeManagementClient
    network: NetworkManagementClient
    resources: ResourceManagementClient

    def version_id(self, version: str, definition: str = DEFINITION) -> str:
        return (
            f"/subscriptions/{SUB}/resourceGroups/{GALLERY_RG}/providers/Microsoft.Compute/galleries/{GALLERY}"
            f"/images/{definition}/versions/{version}"
        )


def seed(arm: Arm) -> Principal:
    arm.add_subscription(SUB, TENANT)
    principal = arm.add_principal(TENANT, CLIENT, secret=SECRET)
    for group in ("images-rg", GALLERY_RG):
        arm.add_resource_group(SUB, group, LOCATION)
    arm.add_gallery(SUB, GALLERY_RG, GALLERY, LOCATION)
    arm.add_gallery_image(
        SUB,
        GALLERY_RG,
        GALLERY,
        DEFINITION,
        LOCATION,
        publisher="acme",
        offer="golden",
        sku="linux",
        features={"SecurityType": "Standard"},
        regions_allowed=(LOCATION, REPLICA),
    )
    arm.add_marketplace_image(*UBUNTU, UBUNTU_VERSIONS)
    return principal


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    machines = Recorder()
    arm = Arm(machines)
    principal = seed(arm)
    edge = Edge.start(tmp_path / "edge", arm.routes)
    for name, value in edge.env().items():
        monkeypatch.setenv(name, value)
    credential = ClientSecretCredential(TENANT, CLIENT, SECRET)
    clients = (
        ComputeManagementClient(credential, SUB),
        NetworkManagementClient(credential, SUB),
        ResourceManagementClient(credential, SUB),
    )
    try:
        yield Cloud(arm, machines, edge, principal, *clients)
    finally:
        for client in clients:
            client.close()
        credential.close()
        edge.stop()
        arm.close()
    assert edge.refused == [], "a client of the edge asked for a host it does not route"


def _error(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None]:
    return exc.value.status_code, exc.value.error.code if exc.value.error else None


def _network(cloud: Cloud, group: str) -> str:
    """A virtual network with one subnet; its subnet's id."""
    vnet = cloud.network.virtual_networks.begin_create_or_update(
        group,
        "vnet",
        {
            "location": LOCATION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}],
            },
        },
    ).result()
    return str(vnet.subnets[0].id)


def _vm(
    cloud: Cloud,
    group: str,
    name: str,
    image_reference: dict[str, str],
    *,
    tags: dict[str, str] | None = None,
    size: str = "Standard_B1s",
    delete_along: bool = False,
) -> Any:
    """A VM with its own public IP and network interface, as the adapter's boot test makes one;
    with `delete_along`, deleting the VM deletes them and its OS disk too."""
    tags = tags or {}
    along = {"deleteOption": "Delete"} if delete_along else {}
    subnet = _network(cloud, group)
    pip = cloud.network.public_ip_addresses.begin_create_or_update(
        group, f"{name}-ip", {"location": LOCATION, "tags": tags, "properties": {"publicIPAllocationMethod": "Static"}}
    ).result()
    nic = cloud.network.network_interfaces.begin_create_or_update(
        group,
        f"{name}-nic",
        {
            "location": LOCATION,
            "tags": tags,
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipconfig",
                        "properties": {
                            "subnet": {"id": subnet},
                            "publicIPAddress": {"id": pip.id, "properties": along},
                        },
                    }
                ]
            },
        },
    ).result()
    return cloud.compute.virtual_machines.begin_create_or_update(
        group,
        name,
        {
            "location": LOCATION,
            "tags": tags,
            "properties": {
                "hardwareProfile": {"vmSize": size},
                "storageProfile": {
                    "imageReference": image_reference,
                    "osDisk": {"createOption": "FromImage", **along},
                },
                "osProfile": {
                    "computerName": name,
                    "adminUsername": "golden",
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": True,
                        "ssh": {"publicKeys": [{"path": "/home/golden/.ssh/authorized_keys", "keyData": SSH_KEY}]},
                    },
                },
                "networkProfile": {"networkInterfaces": [{"id": nic.id, "properties": along}]},
            },
        },
    ).result()


def _publish(cloud: Cloud, version: str, *, regions: tuple[str, ...] = (LOCATION, REPLICA), **profile: Any) -> Any:
    """What a Packer build does, through the SDK: a VM from the marketplace, deallocated,
    generalized, captured as a managed image, published as a gallery image version."""
    group = f"build-{version.replace('.', '-')}"
    cloud.resources.resource_groups.create_or_update(group, {"location": LOCATION})
    publisher, offer, sku = UBUNTU
    vm = _vm(cloud, group, "builder", {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"})
    cloud.compute.virtual_machines.begin_deallocate(group, "builder").result()
    cloud.compute.virtual_machines.generalize(group, "builder")
    image = cloud.compute.images.begin_create_or_update(
        "images-rg", f"golden-{version}", {"location": LOCATION, "properties": {"sourceVirtualMachine": {"id": vm.id}}}
    ).result()
    return cloud.compute.gallery_image_versions.begin_create_or_update(
        GALLERY_RG,
        GALLERY,
        DEFINITION,
        version,
        {
            "location": LOCATION,
            "tags": {BUILD_ID: f"web-{version}"},
            "properties": {
                "publishingProfile": {"targetRegions": [{"name": r} for r in regions], **profile},
                "storageProfile": {"source": {"id": image.id}},
            },
        },
    ).result()


def _machine_image(cloud: Cloud, resource_id: str) -> str:
    state = cloud.arm.snapshot()
    return str(next(r for r in state["resources"] if r["id"].lower() == resource_id.lower())["_fake"]["machine_image"])


# --- tokens --------------------------------------------------------------------------------


def test_client_secret_credential_gets_a_token_after_discovery(cloud: Cloud) -> None:
    credential = ClientSecretCredential(TENANT, CLIENT, SECRET)
    token = credential.get_token("https://management.azure.com/.default")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert (claims["oid"], claims["tid"], claims["aud"]) == (cloud.principal.object_id, TENANT, MANAGEMENT)
    paths = [r["path"] for r in cloud.arm.requests if r["host"] == "login.microsoftonline.com"]
    assert f"/{TENANT}/v2.0/.well-known/openid-configuration" in paths
    assert paths[-1] == f"/{TENANT}/oauth2/v2.0/token"
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        ClientSecretCredential(TENANT, CLIENT, "wrong").get_token("https://management.azure.com/.default")


def test_workload_identity_exchanges_a_federated_assertion(cloud: Cloud, tmp_path: Path) -> None:
    issuer, subject = "https://kubernetes.default.svc", "system:serviceaccount:builds:packer-azure"
    federated = cloud.arm.add_principal(TENANT, "00000000-0000-0000-0000-000000000002", federated=[(issuer, subject)])
    token_file = tmp_path / "token"

    def credential(sub: str) -> WorkloadIdentityCredential:
        claims = {"iss": issuer, "sub": sub, "aud": "api://AzureADTokenExchange", "exp": int(time.time()) + 600}
        token_file.write_text(jwt.encode(claims, "a key the fake does not check, long enough", algorithm="HS256"))
        return WorkloadIdentityCredential(
            tenant_id=TENANT, client_id=federated.client_id, token_file_path=str(token_file)
        )

    token = credential(subject).get_token("https://management.azure.com/.default")
    assert jwt.decode(token.token, options={"verify_signature": False})["oid"] == federated.object_id
    with pytest.raises(ClientAuthenticationError, match="AADSTS70021"):
        credential("system:serviceaccount:other:packer-azure").get_token("https://management.azure.com/.default")


def test_the_api_wants_a_token_of_the_subscriptions_tenant(cloud: Cloud) -> None:
    url = f"{MANAGEMENT}/subscriptions/{SUB}?api-version=2022-12-01"
    anonymous = requests.get(url, timeout=30)
    assert anonymous.status_code == 401
    assert f'authorization_uri="https://login.windows.net/{TENANT}"' in anonymous.headers["WWW-Authenticate"]
    vault = cloud.arm.tokens.issue(cloud.principal, "https://vault.azure.net")
    wrong_audience = requests.get(url, headers={"Authorization": f"Bearer {vault}"}, timeout=30)
    assert (wrong_audience.status_code, wrong_audience.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    stranger = cloud.arm.add_principal("00000000-0000-0000-0000-0000000000cc", CLIENT, secret="x")
    foreign = cloud.arm.tokens.issue(stranger, f"{MANAGEMENT}/")
    other_tenant = requests.get(url, headers={"Authorization": f"Bearer {foreign}"}, timeout=30)
    assert other_tenant.json()["error"]["code"] == "InvalidAuthenticationTokenTenant"


# --- compute through the SDKs ---------------------------------------------------------------


def test_marketplace_latest_resolves_to_the_newest_version(cloud: Cloud) -> None:
    images = cloud.compute.virtual_machine_images
    versions = [v.name for v in images.list(LOCATION, *UBUNTU)]
    assert sorted(versions) == sorted(UBUNTU_VERSIONS)
    newest = images.list(LOCATION, *UBUNTU, orderby="name desc", top=1)
    assert [v.name for v in newest] == ["18.04.202401010"]
    assert images.get(LOCATION, *UBUNTU, "18.04.202401010").hyper_v_generation == "V1"
    with pytest.raises(ResourceNotFoundError):
        images.list(LOCATION, "Canonical", "UbuntuServer", "no-such-sku")
    cloud.resources.resource_groups.create_or_update("vm-rg", {"location": LOCATION})
    vm = _vm(
        cloud,
        "vm-rg",
        "probe",
        {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "18.04-LTS", "version": "latest"},
    )
    assert vm.storage_profile.image_reference.exact_version == "18.04.202401010"


def test_a_build_through_the_sdk_publishes_a_replicated_version(cloud: Cloud) -> None:
    version = _publish(cloud, "1.0.1", replicaCount=2)
    assert version.provisioning_state == "Succeeded"
    regions = [r.name for r in version.publishing_profile.target_regions]
    assert regions == ["West Europe", "North Europe"]  # display names, as Azure answers
    assert all(r.regional_replica_count == 2 for r in version.publishing_profile.target_regions)
    status = cloud.compute.gallery_image_versions.get(
        GALLERY_RG, GALLERY, DEFINITION, "1.0.1", expand="ReplicationStatus"
    ).replication_status
    assert status.aggregated_state == "Completed"
    assert {s.region: s.state for s in status.summary} == {"West Europe": "Completed", "North Europe": "Completed"}
    assert [c[0] for c in cloud.machines.calls] == ["boot", "power_off", "snapshot"]
    booted = cloud.machines.running[cloud.machines.calls[0][1]]
    assert (booted.user, booted.public_keys, booted.image) == ("golden", (SSH_KEY,), None)
    assert _machine_image(cloud, version.id) == "img-1"


def test_gallery_versions_list_update_and_delete(cloud: Cloud) -> None:
    _publish(cloud, "1.0.1")
    _publish(cloud, "1.0.2")
    versions = cloud.compute.gallery_image_versions
    assert sorted(v.name for v in versions.list_by_gallery_image(GALLERY_RG, GALLERY, DEFINITION)) == ["1.0.1", "1.0.2"]
    updated = versions.begin_update(
        GALLERY_RG,
        GALLERY,
        DEFINITION,
        "1.0.2",
        {
            "tags": {BUILD_ID: "web-1.0.2", "goldenimage.io_revoked": "CVE-2026-1234"},
            "properties": {"publishingProfile": {"excludeFromLatest": True, "endOfLifeDate": "2027-01-01T00:00:00Z"}},
        },
    ).result()
    assert updated.publishing_profile.exclude_from_latest is True
    assert updated.publishing_profile.end_of_life_date.year == 2027
    assert updated.tags["goldenimage.io_revoked"] == "CVE-2026-1234"
    assert [r.name for r in updated.publishing_profile.target_regions] == ["West Europe", "North Europe"]

    image_of_102 = _machine_image(cloud, cloud.version_id("1.0.2"))
    versions.begin_delete(GALLERY_RG, GALLERY, DEFINITION, "1.0.2").result()
    with pytest.raises(ResourceNotFoundError):
        versions.get(GALLERY_RG, GALLERY, DEFINITION, "1.0.2")
    # The managed image it was published from still holds the machine image.
    assert ("delete_image", image_of_102) not in cloud.machines.calls
    cloud.compute.images.begin_delete("images-rg", "golden-1.0.2").result()
    assert ("delete_image", image_of_102) in cloud.machines.calls


def test_a_published_version_keeps_its_content(cloud: Cloud) -> None:
    """Another build publishing the same version name is refused, not written over the first."""
    first = _publish(cloud, "1.0.1")
    other = _publish(cloud, "1.0.2")
    body = {
        "location": LOCATION,
        "tags": {BUILD_ID: "another-build"},
        "properties": {
            "publishingProfile": {"targetRegions": [{"name": LOCATION}]},
            "storageProfile": {"source": {"id": other.storage_profile.source.id}},
        },
    }
    versions = cloud.compute.gallery_image_versions
    with pytest.raises(HttpResponseError) as refused:
        versions.begin_create_or_update(GALLERY_RG, GALLERY, DEFINITION, "1.0.1", body).result()
    assert _error(refused) == (409, "PropertyChangeNotAllowed")
    kept = versions.get(GALLERY_RG, GALLERY, DEFINITION, "1.0.1")
    assert kept.tags == first.tags and kept.storage_profile.source.id == first.storage_profile.source.id


def test_a_vm_from_a_gallery_version_and_its_teardown(cloud: Cloud) -> None:
    _publish(cloud, "1.0.1")
    cloud.resources.resource_groups.create_or_update("validate-rg", {"location": LOCATION})
    tags = {BUILD_ID: "web-1.0.1"}
    vm = _vm(cloud, "validate-rg", "check", {"id": cloud.version_id("1.0.1")}, tags=tags)
    assert vm.provisioning_state == "Succeeded"
    shown = cloud.compute.virtual_machines.get("validate-rg", "check", expand="instanceView")
    assert "PowerState/running" in [s.code for s in shown.instance_view.statuses]
    assert [v.name for v in cloud.compute.virtual_machines.list("validate-rg")] == ["check"]
    assert "check" in [v.name for v in cloud.compute.virtual_machines.list_all()]
    view = cloud.compute.virtual_machines.instance_view("validate-rg", "check")
    assert [s.code for s in view.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]

    nic = cloud.network.network_interfaces.get("validate-rg", "check-nic")
    address = nic.ip_configurations[0].private_ip_address
    assert cloud.network.public_ip_addresses.get("validate-rg", "check-ip").ip_address == address
    booted = cloud.machines.running[cloud.machines.calls[-1][1]]
    assert (booted.address, booted.image) == (address, _machine_image(cloud, cloud.version_id("1.0.1")))

    # Nothing in use can go, as in Azure: the VM first, then what it used.
    with pytest.raises(HttpResponseError) as in_use:
        cloud.network.network_interfaces.begin_delete("validate-rg", "check-nic").result()
    assert _error(in_use) == (400, "NicInUse")
    disk = shown.storage_profile.os_disk.name
    with pytest.raises(HttpResponseError) as attached:
        cloud.compute.disks.begin_delete("validate-rg", disk).result()
    assert _error(attached) == (409, "OperationNotAllowed")
    cloud.compute.virtual_machines.begin_delete("validate-rg", "check").result()
    with pytest.raises(HttpResponseError) as allocated:
        cloud.network.public_ip_addresses.begin_delete("validate-rg", "check-ip").result()
    assert _error(allocated) == (400, "PublicIPAddressCannotBeDeleted")
    cloud.network.network_interfaces.begin_delete("validate-rg", "check-nic").result()
    cloud.network.public_ip_addresses.begin_delete("validate-rg", "check-ip").result()
    disk_id = f"/subscriptions/{SUB}/resourceGroups/validate-rg/providers/Microsoft.Compute/disks/{disk}"
    cloud.resources.resources.begin_delete_by_id(disk_id, api_version="2024-03-02").result()
    left = [r.type for r in cloud.resources.resources.list_by_resource_group("validate-rg")]
    assert left == ["Microsoft.Network/virtualNetworks"]
    assert booted.name not in cloud.machines.running
    assert any(event == "release" and subject.endswith(f" {address}") for event, subject in cloud.arm.events)


def test_delete_options_take_the_nic_its_ip_and_the_disk_along(cloud: Cloud) -> None:
    cloud.resources.resource_groups.create_or_update("vm-rg", {"location": LOCATION})
    marketplace = {"publisher": UBUNTU[0], "offer": UBUNTU[1], "sku": UBUNTU[2], "version": "latest"}
    _vm(cloud, "vm-rg", "brief", marketplace, delete_along=True)
    cloud.compute.virtual_machines.begin_delete("vm-rg", "brief").result()
    left = [r.type for r in cloud.resources.resources.list_by_resource_group("vm-rg")]
    assert left == ["Microsoft.Network/virtualNetworks"]


def test_a_definition_boots_its_latest_version_not_excluded(cloud: Cloud) -> None:
    _publish(cloud, "1.0.1")
    _publish(cloud, "1.0.2", excludeFromLatest=True)
    cloud.resources.resource_groups.create_or_update("vm-rg", {"location": LOCATION})
    definition = cloud.version_id("1.0.1").rsplit("/versions/", 1)[0]
    _vm(cloud, "vm-rg", "latest", {"id": definition})
    booted = cloud.machines.running[cloud.machines.calls[-1][1]]
    assert booted.image == _machine_image(cloud, cloud.version_id("1.0.1"))


def test_resource_groups_and_resources_by_tag(cloud: Cloud) -> None:
    resources = cloud.resources
    build = {BUILD_ID: "web-7-abc"}
    resources.resource_groups.create_or_update("pkr-Resource-Group-x", {"location": LOCATION, "tags": build})
    resources.resource_groups.create_or_update("other-rg", {"location": LOCATION, "tags": {BUILD_ID: "web-8"}})
    _vm(
        cloud,
        "pkr-Resource-Group-x",
        "pkrvmx",
        {"publisher": UBUNTU[0], "offer": UBUNTU[1], "sku": UBUNTU[2]},
        tags=build,
    )
    wanted = f"tagName eq '{BUILD_ID}' and tagValue eq 'web-7-abc'"
    assert [g.name for g in resources.resource_groups.list(filter=wanted)] == ["pkr-Resource-Group-x"]
    listed = list(resources.resources.list(filter=wanted))
    # ARM answers a tag filter without the resources' tags.
    assert all(not r.tags for r in listed)
    tagged = sorted(r.type for r in listed)
    # The OS disk Azure makes for the VM carries none of the VM's tags.
    assert tagged == [
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Network/publicIPAddresses",
    ]
    everything = [r.type for r in resources.resources.list_by_resource_group("pkr-Resource-Group-x")]
    assert "Microsoft.Compute/disks" in everything

    pip = cloud.network.public_ip_addresses.update_tags("pkr-Resource-Group-x", "pkrvmx-ip", {"tags": {"swept": "no"}})
    assert pip.tags == {"swept": "no"}
    scope = pip.id
    merged = resources.tags.begin_update_at_scope(
        scope, {"operation": "Merge", "properties": {"tags": {BUILD_ID: "web-7-abc"}}}
    ).result()
    assert merged.properties.tags == {"swept": "no", BUILD_ID: "web-7-abc"}
    assert resources.tags.get_at_scope(scope).properties.tags == merged.properties.tags
    assert len(list(resources.resources.list(filter=wanted))) == 3

    resources.resource_groups.begin_delete("pkr-Resource-Group-x").result()
    assert not resources.resource_groups.check_existence("pkr-Resource-Group-x")
    with pytest.raises(ResourceNotFoundError) as gone:
        resources.resource_groups.begin_delete("pkr-Resource-Group-x")
    assert gone.value.error is not None and gone.value.error.code == "ResourceGroupNotFound"
    assert list(resources.resources.list(filter=wanted)) == []
    assert [c[0] for c in cloud.machines.calls][-1] == "remove"


def test_asynchronous_operations_are_polled(cloud: Cloud) -> None:
    cloud.arm.settings.lro = "async"
    cloud.arm.settings.async_polls = 1
    started = time.monotonic()
    cloud.resources.resource_groups.create_or_update("async-rg", {"location": LOCATION})
    _vm(cloud, "async-rg", "slow", {"publisher": UBUNTU[0], "offer": UBUNTU[1], "sku": UBUNTU[2]})
    cloud.compute.virtual_machines.begin_deallocate("async-rg", "slow").result()
    cloud.resources.resource_groups.begin_delete("async-rg").result()
    elapsed = time.monotonic() - started
    polled = [r for r in cloud.arm.requests if "/operations/" in r["path"] or "/operationResults/" in r["path"]]
    # vnet, public IP, NIC, VM, deallocate, group delete: each answered InProgress once, then done.
    assert len(polled) >= 12
    assert elapsed < 30
    assert [c[0] for c in cloud.machines.calls] == ["boot", "power_off", "remove"]
    assert not cloud.resources.resource_groups.check_existence("async-rg")


def test_replication_takes_the_time_the_test_chooses(cloud: Cloud) -> None:
    cloud.arm.settings.replication_seconds = 2.0
    started = time.monotonic()
    _publish(cloud, "1.0.1")
    assert time.monotonic() - started >= 2.0
    status = cloud.compute.gallery_image_versions.get(
        GALLERY_RG, GALLERY, DEFINITION, "1.0.1", expand="ReplicationStatus"
    ).replication_status
    assert status.aggregated_state == "Completed"

    cloud.arm.settings.lro = "async"
    poller = cloud.compute.gallery_image_versions.begin_update(
        GALLERY_RG,
        GALLERY,
        DEFINITION,
        "1.0.1",
        {"properties": {"publishingProfile": {"targetRegions": [{"name": LOCATION}, {"name": "North Europe"}]}}},
    )
    assert not poller.done()
    poller.result()


def _rest(cloud: Cloud, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A request through the SDK's authenticated pipeline (deployments have a client of their
    own, azure-mgmt-resource-deployments, which the adapter does not need)."""
    request = HttpRequest(method, f"{MANAGEMENT}{path}", params={"api-version": "2024-03-01"}, json=body)
    return cloud.resources.send_request(request)


def _outcome(cloud: Cloud, response: Any) -> str:
    """The final status of a long-running operation, polled as its Azure-AsyncOperation says."""
    url = response.headers.get("Azure-AsyncOperation")
    if url is None:
        return str(response.json()["properties"]["provisioningState"])

    def done() -> str | None:
        status = str(cloud.resources.send_request(HttpRequest("GET", url)).json()["status"])
        return None if status == "InProgress" else status

    return until(done, timeout=30, interval=0.2, what="the operation to end")


def test_deployments_create_their_resources_and_list_operations(cloud: Cloud) -> None:
    cloud.resources.resource_groups.create_or_update("deploy-rg", {"location": LOCATION})
    group = f"/subscriptions/{SUB}/resourceGroups/deploy-rg"
    deployments = f"{group}/providers/Microsoft.Resources/deployments"
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"prefix": {"type": "string"}, "size": {"type": "string", "defaultValue": "small"}},
        "variables": {"vnet": "[concat(parameters('prefix'), '-vnet')]"},
        "resources": [
            {
                "type": "Microsoft.Network/publicIPAddresses",
                "apiVersion": "2023-04-01",
                "name": "[concat(parameters('prefix'), '-ip')]",
                "location": "[resourceGroup().location]",
                "tags": {"size": "[parameters('size')]"},
                "dependsOn": ["[resourceId('Microsoft.Network/virtualNetworks', variables('vnet'))]"],
            },
            {
                "type": "Microsoft.Network/virtualNetworks",
                "apiVersion": "2023-04-01",
                "name": "[variables('vnet')]",
                "location": "[resourceGroup().location]",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
                    "subnets": [{"name": "default", "properties": {"addressPrefix": "10.1.0.0/24"}}],
                },
            },
        ],
        "outputs": {
            "vnetId": {
                "type": "string",
                "value": "[resourceId('Microsoft.Network/virtualNetworks', variables('vnet'))]",
            }
        },
    }
    body = {"properties": {"mode": "Incremental", "template": template, "parameters": {"prefix": {"value": "t"}}}}
    validated = _rest(cloud, "POST", f"{deployments}/d1/validate", body)
    assert validated.status_code == 200, validated.text()
    created = _rest(cloud, "PUT", f"{deployments}/d1", body)
    assert (created.status_code, _outcome(cloud, created)) == (201, "Succeeded")
    deployment = _rest(cloud, "GET", f"{deployments}/d1").json()["properties"]
    assert deployment["outputs"]["vnetId"]["value"].endswith("/virtualNetworks/t-vnet")
    assert cloud.network.public_ip_addresses.get("deploy-rg", "t-ip").tags == {"size": "small"}
    assert cloud.network.subnets.get("deploy-rg", "t-vnet", "default").address_prefix == "10.1.0.0/24"
    operations = _rest(cloud, "GET", f"{deployments}/d1/operations").json()["value"]
    assert [o["properties"]["targetResource"]["resourceName"] for o in operations] == ["t-ip", "t-vnet"]

    broken = {**template, "variables": {"vnet": "[variables('nope')]"}}
    invalid = _rest(
        cloud, "POST", f"{deployments}/d2/validate", {"properties": {"mode": "Incremental", "template": broken}}
    )
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (400, "InvalidTemplate")

    # What only creating finds out fails the deployment; its operations say why.
    nic = {
        "type": "Microsoft.Network/networkInterfaces",
        "apiVersion": "2023-04-01",
        "name": "orphan",
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": f"{group}/no/such"}}}]},
    }
    dangling = {"properties": {"mode": "Incremental", "template": {"contentVersion": "1.0.0.0", "resources": [nic]}}}
    for lro in ("sync", "async"):
        cloud.arm.settings.lro = "sync" if lro == "sync" else "async"
        assert _outcome(cloud, _rest(cloud, "PUT", f"{deployments}/fails-{lro}", dangling)) == "Failed"
        failed = _rest(cloud, "GET", f"{deployments}/fails-{lro}").json()["properties"]
        assert (failed["provisioningState"], failed["error"]["code"]) == ("Failed", "DeploymentFailed")
        [operation] = _rest(cloud, "GET", f"{deployments}/fails-{lro}/operations").json()["value"]
        assert operation["properties"]["statusMessage"]["error"]["code"] == "InvalidResourceReference"


# --- errors ----------------------------------------------------------------------------------


def test_not_found_errors(cloud: Cloud) -> None:
    with pytest.raises(ResourceNotFoundError) as vm:
        cloud.compute.virtual_machines.get("images-rg", "nope")
    assert _error(vm) == (404, "ResourceNotFound")
    with pytest.raises(ResourceNotFoundError) as group:
        cloud.compute.virtual_machines.get("no-such-rg", "nope")
    assert _error(group) == (404, "ResourceGroupNotFound")
    with pytest.raises(ResourceNotFoundError) as gallery:
        cloud.compute.gallery_images.get(GALLERY_RG, "no_gallery", DEFINITION)
    assert _error(gallery) == (404, "ResourceNotFound")
    with pytest.raises(ResourceNotFoundError) as definition:
        cloud.compute.gallery_images.get(GALLERY_RG, GALLERY, "no-definition")
    assert _error(definition) == (404, "NotFound")
    with pytest.raises(ResourceNotFoundError) as version:
        cloud.compute.gallery_image_versions.get(GALLERY_RG, GALLERY, DEFINITION, "9.9.9")
    assert _error(version) == (404, "NotFound")
    credential = ClientSecretCredential(TENANT, CLIENT, SECRET)
    elsewhere = ResourceManagementClient(credential, "00000000-0000-0000-0000-0000000000ff")
    with pytest.raises(ResourceNotFoundError) as subscription:
        list(elsewhere.resource_groups.list())
    assert _error(subscription) == (404, "SubscriptionNotFound")


def test_a_denied_action_is_authorization_failed(cloud: Cloud) -> None:
    _publish(cloud, "1.0.1")
    cloud.arm.deny(CLIENT, "Microsoft.Compute/galleries/images/versions/delete", scope=f"/subscriptions/{SUB}")
    with pytest.raises(HttpResponseError) as denied:
        cloud.compute.gallery_image_versions.begin_delete(GALLERY_RG, GALLERY, DEFINITION, "1.0.1").result()
    assert _error(denied) == (403, "AuthorizationFailed")
    assert "Microsoft.Compute/galleries/images/versions/delete" in str(denied.value)
    assert cloud.compute.gallery_image_versions.get(GALLERY_RG, GALLERY, DEFINITION, "1.0.1").name == "1.0.1"
    cloud.arm.deny(cloud.principal.object_id, "Microsoft.Resources/subscriptions/resourceGroups/*")
    with pytest.raises(HttpResponseError) as by_object_id:
        cloud.resources.resource_groups.get(GALLERY_RG)
    assert _error(by_object_id) == (403, "AuthorizationFailed")


def test_a_core_quota_is_quota_exceeded(cloud: Cloud) -> None:
    cloud.arm.set_core_quota(SUB, LOCATION, 2)
    cloud.resources.resource_groups.create_or_update("quota-rg", {"location": LOCATION})
    _vm(cloud, "quota-rg", "first", {"publisher": UBUNTU[0], "offer": UBUNTU[1], "sku": UBUNTU[2]}, size="Standard_B2s")
    with pytest.raises(HttpResponseError) as exceeded:
        _vm(cloud, "quota-rg", "second", {"publisher": UBUNTU[0], "offer": UBUNTU[1], "sku": UBUNTU[2]})
    assert _error(exceeded) == (409, "QuotaExceeded")
    assert "Current Limit: 2, Current Usage: 2, Additional Required: 1" in str(exceeded.value)
    cloud.compute.virtual_machines.begin_deallocate("quota-rg", "first").result()  # frees its cores
    _vm(cloud, "quota-rg", "third", {"publisher": UBUNTU[0], "offer": UBUNTU[1], "sku": UBUNTU[2]})


def test_a_region_the_definition_refuses_is_invalid_parameter(cloud: Cloud) -> None:
    with pytest.raises(HttpResponseError) as refused:
        _publish(cloud, "1.0.1", regions=(LOCATION, "eastus"))
    assert _error(refused) == (400, "InvalidParameter")
    assert "eastus" in str(refused.value)


def test_state_is_readable_over_http(cloud: Cloud) -> None:
    state = requests.get(f"{MANAGEMENT}/_fake/state", timeout=30).json()
    ids = [r["id"] for r in state["resources"]]
    assert f"/subscriptions/{SUB}/resourceGroups/{GALLERY_RG}" in ids
    definition = next(r for r in state["resources"] if r["name"] == DEFINITION)
    assert definition["properties"]["features"] == [{"name": "SecurityType", "value": "Standard"}]


# --- Packer 1.6.6 ------------------------------------------------------------------------------

PACKER_TEMPLATE = """
source "azure-arm" "golden" {{
  client_id       = "{client}"
  client_secret   = "{secret}"
  {tenant}
  subscription_id = "{subscription}"

  os_type         = "Linux"
  image_publisher = "Canonical"
  image_offer     = "UbuntuServer"
  image_sku       = "18.04-LTS"
  image_version   = "latest"
  {placement}
  vm_size         = "Standard_B1s"

  managed_image_name                = "golden-{version}"
  managed_image_resource_group_name = "images-rg"
  shared_image_gallery_destination {{
    resource_group      = "{gallery_rg}"
    gallery_name        = "{gallery}"
    image_name          = "{definition}"
    image_version       = "{version}"
    replication_regions = ["{replica}"]
  }}
  azure_tags   = {{ "{build_tag}" = "web-{version}", "goldenimage.io_managed-by" = "goldenimage-operator" }}
  communicator = "ssh"
  ssh_port     = {ssh_port}
  ssh_timeout  = "30s"
}}
build {{
  sources = ["source.azure-arm.golden"]
  provisioner "shell" {{
    inline          = ["echo provisioned by packer > /etc/golden"]
    execute_command = "chmod +x {{{{ .Path }}}}; {{{{ .Vars }}}} sudo -E sh '{{{{ .Path }}}}'"
  }}
}}
"""


RUN_TAG = "GOLDENIMAGE_ARM_FAKE_RUN"


@dataclass
class Namespace:
    """A network namespace with only loopback, held by a process of its own."""

    holder: subprocess.Popen[bytes]
    path: Path


@pytest.fixture
def loopback_only(tmp_path: Path) -> Iterator[Namespace]:
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            components.missing(tool, "install util-linux and iproute2 (`apt-get install util-linux iproute2`)")
    if os.geteuid() != 0:
        components.missing("a network namespace", "the Packer tests run as root, to unshare the network namespace")
    ready = tmp_path / "netns-ready"
    holder = processes.spawn(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && touch {ready} && exec sleep 900"],
        log=tmp_path / "netns.log",
    )
    procs.started([holder.pid])
    try:
        processes.wait_until(
            lambda: ready.exists() or holder.poll() is not None, timeout=20, what="the network namespace"
        )
        processes.raise_if_exited("unshare", holder, tmp_path / "netns.log")
        yield Namespace(holder, Path(f"/proc/{holder.pid}/ns/net"))
    finally:
        processes.stop(holder, grace=2)
    assert not procs.alive(holder.pid)


@dataclass
class Build:
    returncode: int
    output: str
    sshd: RecordingSshServer

    def gallery_version_id(self) -> str:
        found = re.search(r"ManagedImageSharedImageGalleryId: (\S+?)(?:\\n|\s)", self.output)
        assert found, self.output[-3000:]
        return found.group(1)


def _packer(
    cloud: Cloud,
    namespace: Namespace,
    tmp_path: Path,
    version: str,
    *,
    build_group: str | None = None,
    tenant: bool = True,
) -> Build:
    """Run `packer build` in the namespace, through the edge, against the recording SSH server;
    nothing it started is left running afterwards."""
    packer = components.packer()
    cloud.edge.listen_in(namespace.path)
    placement = f'build_resource_group_name = "{build_group}"' if build_group else f'location = "{LOCATION}"'
    with RecordingSshServer.start(netns=namespace.path) as sshd:
        template = PACKER_TEMPLATE.format(
            client=CLIENT,
            secret=SECRET,
            tenant=f'tenant_id       = "{TENANT}"' if tenant else "",
            subscription=SUB,
            placement=placement,
            version=version,
            gallery_rg=GALLERY_RG,
            gallery=GALLERY,
            definition=DEFINITION,
            replica=REPLICA,
            build_tag=BUILD_ID,
            ssh_port=sshd.port,
        )
        (tmp_path / "golden.pkr.hcl").write_text(template)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "CHECKPOINT_DISABLE": "1",
            "PACKER_CACHE_DIR": str(tmp_path / "packer-cache"),
            RUN_TAG: tmp_path.name,  # inherited by Packer's plugin processes
            **cloud.edge.env(),
        }
        log = tmp_path / "packer.log"
        process = processes.spawn(
            ["nsenter", f"--net={namespace.path}", packer, "build", "-machine-readable", "golden.pkr.hcl"],
            log=log,
            env=env,
            cwd=tmp_path,
        )
        procs.started([process.pid])
        try:
            returncode = process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            returncode = -1
        finally:
            processes.stop(process, grace=5)
        assert processes.tagged(RUN_TAG, tmp_path.name) == [], "Packer left processes behind"
        return Build(returncode, log.read_text(), sshd)


@pytest.mark.parametrize("lro", ["sync", "async"])
def test_packer_publishes_a_gallery_version(cloud: Cloud, loopback_only: Namespace, tmp_path: Path, lro: str) -> None:
    cloud.arm.settings.lro = "sync" if lro == "sync" else "async"
    cloud.arm.settings.public_address = "127.0.0.1"  # where the recording SSH server listens
    # Without a tenant, Packer asks the API which tenant the subscription belongs to.
    build = _packer(cloud, loopback_only, tmp_path, "1.0.3", tenant=lro == "sync")
    assert build.returncode == 0, build.output[-4000:]
    if lro == "async":
        asked = cloud.arm.requests[0]
        assert (asked["path"], asked["status"], asked["client"]) == (f"/subscriptions/{SUB}", 401, None)

    version_id = build.gallery_version_id()
    assert version_id.lower() == cloud.version_id("1.0.3").lower()
    version = cloud.arm.resource(version_id)
    assert version is not None
    assert [r["name"] for r in version["properties"]["publishingProfile"]["targetRegions"]] == [
        "North Europe",
        "West Europe",
    ]
    assert version["properties"]["replicationStatus"]["aggregatedState"] == "Completed"
    assert version["tags"] == {BUILD_ID: "web-1.0.3", "goldenimage.io_managed-by": "goldenimage-operator"}
    groups = [r["name"] for r in cloud.arm.resources("Microsoft.Resources/resourceGroups")]
    assert sorted(groups) == sorted(["images-rg", GALLERY_RG]), "the temporary resource group is gone"
    script = next(c for path, c in build.sshd.uploads.items() if path.startswith("/tmp/script_"))
    assert b"echo provisioned by packer > /etc/golden" in script
    assert build.sshd.ran("sudo -E sh '/tmp/script_")
    assert [c[0] for c in cloud.machines.calls] == ["boot", "power_off", "snapshot", "remove"]
    assert [e for e, _ in cloud.arm.events if e == "generalize"] == ["generalize"]
    assert cloud.edge.refused == []


def test_packer_with_a_build_resource_group_leaks_the_os_disk(
    cloud: Cloud, loopback_only: Namespace, tmp_path: Path
) -> None:
    cloud.arm.settings.public_address = "127.0.0.1"
    cloud.arm.add_resource_group(SUB, "build-rg", LOCATION)
    build = _packer(cloud, loopback_only, tmp_path, "1.0.4", build_group="build-rg")
    assert build.returncode == 0, build.output[-4000:]
    assert cloud.arm.resource(cloud.version_id("1.0.4")) is not None
    left = [(r["type"], r["tags"]) for r in cloud.arm.resources() if "/resourcegroups/build-rg/" in r["id"].lower()]
    # Packer 1.6.6 deletes what its deployment made, one by one, but never the VM's OS disk,
    # which carries no tags: what the sweeper has to find and delete.
    assert left == [("Microsoft.Compute/disks", {})]
    operations = [r for r in cloud.arm.requests if r["path"].lower().endswith("/operations")]
    assert operations and "/providers/" not in operations[0]["path"], "the old deployment operations path"
