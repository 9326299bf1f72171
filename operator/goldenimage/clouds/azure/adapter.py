"""The Azure adapter (azure-identity, azure-mgmt-compute, -network, -resource): resolve
Marketplace `latest`, find, check, revoke and delete the Compute Gallery image versions builds
made, sweep what failed attempts and validations left, run validation VMs, and publish channels.

Artifacts are gallery image version ids, recorded once per replication region (the same id in
each), so every call on one knows its subscription and resource group. Sweeps and
`find_artifacts` are handed only a build id: they search every subscription the credentials can
see (and those met in targets and artifacts) for what carries the build-id tag.

Validation: each VM gets a resource group of its own (`goldenimage-validate-...`, tagged like
the VM) holding a virtual network, a network security group, a Standard public IP, a NIC and the
VM booted from the gallery version, with an SSH key made for that run. Checks connect to the
public IP (a fresh network is reachable from the validation Job no other way) and commands run
over SSH as the login user through sudo; the security group lets in TCP on port 22 and the
ports the checks name, from anywhere, for the VM's life. Terminating deletes the resource group,
which takes the VM, its disk, NIC, IP and network with it.

Revocation tags the version revoked, excludes it from its definition's latest and sets its end
of life date. Azure's end of life is informational (VMs can still be created from the version),
as AWS's deprecation leaves launches by id working: what stops new consumers is that `latest`
no longer serves it and the channels move off it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.polling import LROPoller
from pydantic import BaseModel

from ...api import labels
from ...api.errors import CloudError, CloudRefusedError, ForeignArtifactError, SourceNotFoundError
from ...api.goldenimage import Target, Validation
from ...api.imagechannel import AzurePublish
from ...api.names import fit
from ...api.types import CloudName
from .. import ssh
from ..base import CloudResource, Instance, Pointer, PublishScope
from .arm import Arm
from .kind import KIND, GalleryVersion, ResourceRef, marketplace_urn, normalize, settings, version_key
from .publish import Publisher

BUILD_KEY = KIND.tag_key(labels.BUILD_ID)
TARGET_KEY = KIND.tag_key(labels.TARGET)
ATTEMPT_KEY = KIND.tag_key(labels.ATTEMPT)
REVOKED_KEY = KIND.tag_key(labels.REVOKED)
MANAGED_BY_KEY = KIND.tag_key(labels.MANAGED_BY)

VERSION_TYPE = "microsoft.compute/galleries/images/versions"
MANAGED_IMAGE_TYPE = "microsoft.compute/images"
# What a sweep deletes, by type, and the order it goes in: users before what they use. A
# resource group takes everything in it along.
SWEPT = {
    "microsoft.resources/resourcegroups": "resource-group",
    "microsoft.compute/virtualmachines": "vm",
    "microsoft.network/networkinterfaces": "nic",
    "microsoft.network/publicipaddresses": "public-ip",
    "microsoft.network/networksecuritygroups": "nsg",
    "microsoft.network/virtualnetworks": "vnet",
    "microsoft.compute/disks": "disk",
    VERSION_TYPE: "image-version",
    MANAGED_IMAGE_TYPE: "managed-image",
}
ORDER = {kind: index for index, kind in enumerate(SWEPT.values())}

VALIDATION_PREFIX = "goldenimage-validate-"
# Resource group names take 90 characters: the prefix and build id, then a random suffix.
_GROUP_BASE = 80
_SSH = 22
_OS_DISK = re.compile(r"->\s*Managed OS Disk\s*:\s*'(/subscriptions/[^']+)'")
# Revocation's end of life: a little ahead, as a date in the past may be refused.
_END_OF_LIFE_MARGIN = timedelta(minutes=5)


def _ref(resource_id: str) -> ResourceRef:
    try:
        return ResourceRef.parse(resource_id)
    except ValueError as exc:
        raise CloudRefusedError(str(exc)) from exc


def _version_ref(resource_id: str) -> GalleryVersion:
    try:
        return GalleryVersion.parse(resource_id)
    except ValueError as exc:
        raise CloudRefusedError(str(exc)) from exc


def _matches(tags: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    """Tag names are case-insensitive in Azure, values are not."""
    lowered = {k.lower(): v for k, v in (tags or {}).items()}
    return all(lowered.get(k.lower()) == v for k, v in wanted.items())


def _tag(tags: Mapping[str, str] | None, key: str) -> str | None:
    return next((v for k, v in (tags or {}).items() if k.lower() == key.lower()), None)


class AzureApi:
    name: CloudName = "azure"
    kind = KIND

    def __init__(self, *, credentials: Mapping[str, str] | None = None) -> None:
        self.arm = Arm(credentials)
        self._subscriptions: set[str] = set()
        # Validation VMs this process launched: their SSH key and login user, and the creation
        # still running.
        self._keys: dict[str, tuple[ssh.KeyPair, str]] = {}
        self._creating: dict[str, LROPoller[Any]] = {}
        self._lock = threading.Lock()
        self._publisher = Publisher(self.arm, self._learn)

    # -- subscriptions ---------------------------------------------------------------------

    def _learn(self, subscription: str) -> None:
        with self._lock:
            self._subscriptions.add(subscription.lower())

    def subscriptions(self) -> list[str]:
        """Where sweeps and searches look: every subscription the credentials see, and those met."""
        found = {s.lower() for s in self.arm.subscriptions()}
        with self._lock:
            found |= self._subscriptions
        if self.arm.default_subscription:
            found.add(self.arm.default_subscription.lower())
        return sorted(found)

    # -- gallery image versions ------------------------------------------------------------

    def version(self, ref: GalleryVersion, *, replication: bool = False) -> Any | None:
        """The gallery image version (with its per-region replication state), or None."""
        self._learn(ref.subscription)
        versions = self.arm.compute(ref.subscription).gallery_image_versions
        expand = "ReplicationStatus" if replication else None
        return self.arm.call(
            f"reading gallery image version {ref.id}",
            lambda: versions.get(ref.resource_group, ref.gallery, ref.image, ref.version, expand=expand),
            missing_ok=True,
        )

    def update_version(self, ref: GalleryVersion, profile: Mapping[str, Any]) -> None:
        """Change publishing profile fields (excludeFromLatest, endOfLifeDate) of a version."""
        versions = self.arm.compute(ref.subscription).gallery_image_versions
        body = {"properties": {"publishingProfile": dict(profile)}}
        self.arm.run(
            f"updating {', '.join(sorted(profile))} of gallery image version {ref.id}",
            lambda: versions.begin_update(ref.resource_group, ref.gallery, ref.image, ref.version, body),
        )

    @staticmethod
    def target_regions(version: Any) -> list[str]:
        profile = version.publishing_profile
        return [normalize(str(r.name)) for r in (profile.target_regions or [])] if profile else []

    # -- sources ---------------------------------------------------------------------------

    def resolve_source(self, target: Target) -> str | None:
        """The Marketplace version `latest` names now, as `publisher:offer:sku:version` (a
        pinned version is checked and returned as it is); None for a gallery image version,
        which is used as written once it is known to be replicated where the build runs. The
        destination image definition is checked too: without it no build can finish."""
        az = settings(target)
        self._learn(az.subscription_id)
        self._destination(target)
        location = normalize(az.location)
        if az.source.marketplace is not None:
            m = az.source.marketplace
            images = self.arm.compute(az.subscription_id).virtual_machine_images
            urn = marketplace_urn(m, m.version)
            if m.version.lower() == "latest":
                found = self.arm.listed(
                    f"listing the versions of Marketplace image {urn} in {location}",
                    lambda: images.list(location, m.publisher, m.offer, m.sku),
                    missing_ok=True,
                )
                names = [str(v.name) for v in found]
                if not names:
                    raise SourceNotFoundError(f"Marketplace image {urn} has no version in {location}")
                return marketplace_urn(m, max(names, key=version_key))
            exact = self.arm.call(
                f"reading Marketplace image {urn} in {location}",
                lambda: images.get(location, m.publisher, m.offer, m.sku, m.version),
                missing_ok=True,
            )
            if exact is None:
                raise SourceNotFoundError(f"Marketplace image {urn} does not exist in {location}")
            return urn
        assert az.source.gallery_image_version_id is not None
        ref = _version_ref(az.source.gallery_image_version_id)
        version = self.version(ref)
        if version is None:
            raise SourceNotFoundError(f"gallery image version {ref.id} does not exist")
        if location not in self.target_regions(version):
            raise SourceNotFoundError(
                f"gallery image version {ref.id} is not replicated to {location}, where the build runs"
            )
        return None

    def _destination(self, target: Target) -> None:
        az = settings(target)
        gallery = az.gallery
        group = gallery.resource_group or az.resource_group
        images = self.arm.compute(az.subscription_id).gallery_images
        found = self.arm.call(
            f"reading image definition {gallery.image_definition} of gallery {gallery.name}",
            lambda: images.get(group, gallery.name, gallery.image_definition),
            missing_ok=True,
        )
        if found is None:
            raise SourceNotFoundError(
                f"image definition {gallery.image_definition} of gallery {gallery.name} in resource group {group} "
                f"(subscription {az.subscription_id}) does not exist: builds publish their versions there"
            )

    # -- artifacts -------------------------------------------------------------------------

    def _regional(self, kind: str, resource_id: str, location: str, covered: Sequence[str]) -> list[CloudResource]:
        """A resource once per region of `covered` (the version's target regions among the
        regions asked for), else once in its own location."""
        wanted = list(dict.fromkeys(normalize(x) for x in covered))
        if wanted:
            return [CloudResource(kind, region, resource_id) for region in wanted]
        return [CloudResource(kind, normalize(location), resource_id)]

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[CloudResource]:
        asked = {normalize(r) for r in regions}
        out: list[CloudResource] = []
        for subscription in self.subscriptions():
            _, resources = self.arm.by_tag(subscription, BUILD_KEY, build_id)
            for resource in resources:
                if str(resource.type).lower() != VERSION_TYPE:
                    continue
                version = self.version(_version_ref(str(resource.id)))
                if version is None:
                    continue
                covered = [r for r in self.target_regions(version) if r in asked]
                out += self._regional("image-version", str(version.id), str(version.location), covered)
        return out

    def delete_artifact(self, region: str, artifact_id: str, build_id: str) -> list[CloudResource]:
        ref = _version_ref(artifact_id)
        version = self.version(ref)
        if version is None:
            return []
        if _tag(version.tags, BUILD_KEY) != build_id:
            # Only what this build made: status is no licence to delete anyone's image.
            raise ForeignArtifactError(f"{artifact_id} does not carry {BUILD_KEY}={build_id}")
        source = (
            version.storage_profile.source.id if version.storage_profile and version.storage_profile.source else None
        )
        versions = self.arm.compute(ref.subscription).gallery_image_versions
        self.arm.run(
            f"deleting gallery image version {ref.id}",
            lambda: versions.begin_delete(ref.resource_group, ref.gallery, ref.image, ref.version),
            missing_ok=True,
        )
        deleted = [CloudResource("image-version", region, ref.id)]
        if source and ResourceRef.parse(source).type.lower() == MANAGED_IMAGE_TYPE:
            deleted += self._delete_managed_image(str(source), build_id)
        return deleted

    def _delete_managed_image(self, image_id: str, build_id: str) -> list[CloudResource]:
        """The intermediate managed image a version was made from, if it is still there and the
        build's."""
        ref = _ref(image_id)
        images = self.arm.compute(ref.subscription).images
        image = self.arm.call(
            f"reading managed image {image_id}", lambda: images.get(ref.resource_group, ref.name), missing_ok=True
        )
        if image is None or _tag(image.tags, BUILD_KEY) != build_id:
            return []
        self.arm.run(
            f"deleting managed image {image_id}",
            lambda: images.begin_delete(ref.resource_group, ref.name),
            missing_ok=True,
        )
        return [CloudResource("managed-image", normalize(str(image.location)), str(image.id))]

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """A version is missing in a region when it is gone, failed, no longer replicated there,
        or its replica there failed."""
        missing: set[tuple[str, str]] = set()
        read: dict[str, Any] = {}
        for region, ident in artifacts:
            try:
                ref = GalleryVersion.parse(ident)
            except ValueError:
                # Not a version (a managed image recorded by an older operator): it is there or not.
                other = _ref(ident)
                if self.arm.tags(other.subscription, ident) is None:
                    missing.add((region, ident))
                continue
            key = ref.id.lower()
            if key not in read:
                read[key] = self.version(ref, replication=True)
            version = read[key]
            if version is None or str(version.provisioning_state) == "Failed":
                missing.add((region, ident))
                continue
            status = version.replication_status
            states = {normalize(str(s.region)): str(s.state) for s in (status.summary if status else None) or []}
            wanted = normalize(region)
            if wanted not in self.target_regions(version) or states.get(wanted) == "Failed":
                missing.add((region, ident))
        return missing

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        ref = _version_ref(artifact_id)
        version = self.version(ref)
        if version is None:
            return None
        # Azure tag values take 256 characters.
        if _tag(version.tags, REVOKED_KEY) is None:
            self.arm.change_tags(ref.subscription, ref.id, "Merge", {REVOKED_KEY: reason[:256]})
        profile = version.publishing_profile
        end = (datetime.now(UTC) + _END_OF_LIFE_MARGIN).replace(microsecond=0)
        change: dict[str, Any] = {}
        if not (profile and profile.exclude_from_latest):
            change["excludeFromLatest"] = True
        current = profile.end_of_life_date if profile else None
        if current is None or current > end:
            change["endOfLifeDate"] = end.isoformat().replace("+00:00", "Z")
        if change:
            self.update_version(ref, change)
        return None

    # -- leftovers -------------------------------------------------------------------------

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        """What carries the build's tags, in every subscription the credentials see (the tags
        name the build; `regions` do not narrow the search): Packer's temporary resource groups
        and validation resource groups (whose contents go with them), VMs, NICs, public IPs,
        networks, security groups and disks outside them (an OS disk Packer leaks is tagged
        while it builds), the intermediate managed images, and for one attempt its gallery
        versions (never recorded: they would only leak)."""
        wanted = {BUILD_KEY: build_id}
        if target is not None:
            wanted[TARGET_KEY] = target
            if attempt is not None:
                wanted[ATTEMPT_KEY] = str(attempt)
        out: list[CloudResource] = []
        for subscription in self.subscriptions():
            groups, resources = self.arm.by_tag(subscription, BUILD_KEY, build_id)
            groups = [g for g in groups if _matches(g.tags, wanted)]
            out += [CloudResource("resource-group", normalize(str(g.location)), str(g.id)) for g in groups]
            inside = tuple(str(g.id).lower() + "/" for g in groups)
            for resource in resources:
                kind = SWEPT.get(str(resource.type).lower())
                if kind is None or str(resource.id).lower().startswith(inside):
                    continue
                if kind == "image-version" and (target is None or attempt is None):
                    continue
                # A tag filter answers without the tags: the others are read one by one.
                tags = self.arm.tags(subscription, str(resource.id))
                if tags is not None and _matches(tags, wanted):
                    out.append(CloudResource(kind, normalize(str(resource.location)), str(resource.id)))
        return out

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        found = self.leftovers(build_id, regions, target, attempt)
        deleted: list[CloudResource] = []
        failures: list[str] = []
        for resource in sorted(found, key=lambda r: (ORDER[r.kind], r.id)):
            try:
                deleted += self._delete(resource, build_id)
            except (CloudError, CloudRefusedError) as exc:
                failures.append(f"{resource}: {exc}")
        if failures:
            raise CloudError("; ".join(failures))
        return deleted

    def _delete(self, resource: CloudResource, build_id: str) -> list[CloudResource]:
        if resource.kind == "image-version":
            return self.delete_artifact(resource.region, resource.id, build_id)
        if resource.kind == "resource-group":
            subscription = resource.id.split("/")[2]
            group = resource.id.rstrip("/").rsplit("/", 1)[-1]
            client = self.arm.resources(subscription)
            self.arm.run(
                f"deleting resource group {group}", lambda: client.resource_groups.begin_delete(group), missing_ok=True
            )
            return [resource]
        ref = _ref(resource.id)
        deleted = [resource]
        compute, network = self.arm.compute(ref.subscription), self.arm.network(ref.subscription)
        group, name = ref.resource_group, ref.name
        operations: dict[str, Callable[[], LROPoller[Any]]] = {
            "vm": lambda: compute.virtual_machines.begin_delete(group, name),
            "nic": lambda: network.network_interfaces.begin_delete(group, name),
            "public-ip": lambda: network.public_ip_addresses.begin_delete(group, name),
            "nsg": lambda: network.network_security_groups.begin_delete(group, name),
            "vnet": lambda: network.virtual_networks.begin_delete(group, name),
            "disk": lambda: compute.disks.begin_delete(group, name),
            "managed-image": lambda: compute.images.begin_delete(group, name),
        }
        os_disk: str | None = None
        if resource.kind == "vm":
            # The OS disk stays behind a deleted VM unless it was created to go along.
            vm = self.arm.call(
                f"reading VM {resource.id}", lambda: compute.virtual_machines.get(group, name), missing_ok=True
            )
            disk = vm.storage_profile.os_disk if vm is not None and vm.storage_profile else None
            os_disk = disk.managed_disk.id if disk is not None and disk.managed_disk else None
        self.arm.run(f"deleting {resource}", operations[resource.kind], missing_ok=True)
        if os_disk:
            disk_ref = _ref(os_disk)
            disks = self.arm.compute(disk_ref.subscription).disks
            self.arm.run(
                f"deleting OS disk {os_disk}",
                lambda: disks.begin_delete(disk_ref.resource_group, disk_ref.name),
                missing_ok=True,
            )
            deleted.append(CloudResource("disk", resource.region, os_disk))
        return deleted

    # -- validation VMs --------------------------------------------------------------------

    @staticmethod
    def _ports(validation: Validation | None) -> list[int]:
        checks = validation.checks if validation is not None else []
        ports = {_SSH}
        ports |= {c.tcp.port for c in checks if c.tcp is not None}
        ports |= {c.http.port for c in checks if c.http is not None}
        return sorted(ports)

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        az = settings(target)
        subscription, location = az.subscription_id, normalize(region)
        self._learn(subscription)
        _version_ref(image)
        build = re.sub(r"[^a-z0-9-]", "-", tags.get(labels.BUILD_ID, "").lower()).strip("-")
        group = f"{fit(f'{VALIDATION_PREFIX}{build}'.rstrip('-'), _GROUP_BASE)}-{secrets.token_hex(4)}"
        user = KIND.login_user(target)
        key = ssh.new_key(comment=f"goldenimage-{group}")
        body = {"location": location, "tags": KIND.tags(tags)}
        resources = self.arm.resources(subscription)
        vm_id = (
            f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/validate"
        )
        try:
            self.arm.call(
                f"creating resource group {group} in {location}",
                lambda: resources.resource_groups.create_or_update(group, body),
            )
            nic = self._validation_network(subscription, group, body, self._ports(validation))
            vm = _vm_body(body, az.vm_size, image, user, key.public, nic)
            compute = self.arm.compute(subscription)
            # Started, not waited for: `ready` asks whether it finished.
            poller = self.arm.call(
                f"launching a validation VM from {image} in {location}",
                lambda: compute.virtual_machines.begin_create_or_update(group, "validate", vm),
            )
        except BaseException:
            # Nobody else knows the group's name: it goes now, with whatever it holds.
            with contextlib.suppress(CloudError, CloudRefusedError):
                self.arm.run(
                    f"deleting resource group {group}",
                    lambda: resources.resource_groups.begin_delete(group),
                    missing_ok=True,
                )
            shutil.rmtree(key.private.parent, ignore_errors=True)
            raise
        with self._lock:
            self._keys[vm_id.lower()] = (key, user)
            if poller is not None:
                self._creating[vm_id.lower()] = poller
        return Instance(id=vm_id, region=location, public=True)

    def _validation_network(self, subscription: str, group: str, body: Mapping[str, Any], ports: Sequence[int]) -> str:
        """The security group, network, public IP and NIC of a validation group; the NIC's id."""
        network = self.arm.network(subscription)
        nsg = self.arm.run(
            f"creating the security group of {group}",
            lambda: network.network_security_groups.begin_create_or_update(
                group, "validate-nsg", {**body, "properties": {"securityRules": _inbound_rules(ports)}}
            ),
        )
        address_space = {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}
        subnets = {"subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}]}
        vnet = self.arm.run(
            f"creating the network of {group}",
            lambda: network.virtual_networks.begin_create_or_update(
                group, "validate-vnet", {**body, "properties": {**address_space, **subnets}}
            ),
        )
        # Standard: Basic public IPs are retired; Standard ones are closed but for the group's rules.
        ip = self.arm.run(
            f"creating the public IP of {group}",
            lambda: network.public_ip_addresses.begin_create_or_update(
                group,
                "validate-ip",
                {**body, "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}},
            ),
        )
        ip_configuration = {
            "name": "ipconfig",
            "properties": {"subnet": {"id": vnet.subnets[0].id}, "publicIPAddress": {"id": ip.id}},
        }
        nic = self.arm.run(
            f"creating the network interface of {group}",
            lambda: network.network_interfaces.begin_create_or_update(
                group,
                "validate-nic",
                {
                    **body,
                    "properties": {"networkSecurityGroup": {"id": nsg.id}, "ipConfigurations": [ip_configuration]},
                },
            ),
        )
        return str(nic.id)

    def ready(self, instance: Instance) -> Instance | None:
        ref = _ref(instance.id)
        with self._lock:
            poller = self._creating.get(instance.id.lower())
        if poller is not None:
            if not poller.done():
                return None
            with self._lock:
                self._creating.pop(instance.id.lower(), None)
            self.arm.call(f"creating validation VM {instance.id}", poller.result)
        compute, network = self.arm.compute(ref.subscription), self.arm.network(ref.subscription)
        vm = self.arm.call(
            f"reading VM {instance.id}",
            lambda: compute.virtual_machines.get(ref.resource_group, ref.name, expand="instanceView"),
            missing_ok=True,
        )
        if vm is None:
            raise CloudError(f"VM {instance.id} is gone")
        state = str(vm.provisioning_state)
        if state == "Failed":
            raise CloudError(f"VM {instance.id} failed to provision")
        if state != "Succeeded":
            return None
        statuses = [str(s.code) for s in (vm.instance_view.statuses if vm.instance_view else None) or []]
        power = next((c.split("/", 1)[1] for c in statuses if c.startswith("PowerState/")), "")
        if power == "starting" or not power:
            return None
        if power != "running":
            raise CloudError(f"VM {instance.id} is {power} instead of running")
        nic_ref = _ref(str(vm.network_profile.network_interfaces[0].id))
        nic = self.arm.call(
            f"reading the network interface of {instance.id}",
            lambda: network.network_interfaces.get(nic_ref.resource_group, nic_ref.name),
        )
        public = nic.ip_configurations[0].public_ip_address if nic is not None else None
        if public is None:
            raise CloudError(f"VM {instance.id} has no public IP")
        ip_ref = _ref(str(public.id))
        ip = self.arm.call(
            f"reading the public IP of {instance.id}",
            lambda: network.public_ip_addresses.get(ip_ref.resource_group, ip_ref.name),
        )
        address = ip.ip_address if ip is not None else None
        if not address:
            return None
        return Instance(id=instance.id, region=instance.region, address=str(address), public=True)

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        with self._lock:
            known = self._keys.get(instance.id.lower())
        if known is None:
            raise CloudError(f"no SSH key for {instance.id}: it was not launched by this process")
        if not instance.address:
            raise CloudError(f"{instance.id} has no address yet")
        key, user = known
        return ssh.run(instance.address, user, key, command, timeout)

    def terminate(self, instance: Instance) -> None:
        ref = _ref(instance.id)
        if ref.resource_group.lower().startswith(VALIDATION_PREFIX):
            # The VM's own group: everything in it was made for this validation.
            resources = self.arm.resources(ref.subscription)
            self.arm.run(
                f"deleting resource group {ref.resource_group}",
                lambda: resources.resource_groups.begin_delete(ref.resource_group),
                missing_ok=True,
            )
        else:
            self._delete(CloudResource("vm", instance.region, instance.id), build_id="")
        with self._lock:
            known = self._keys.pop(instance.id.lower(), None)
            self._creating.pop(instance.id.lower(), None)
        if known is not None:
            shutil.rmtree(known[0].private.parent, ignore_errors=True)

    # -- publication -----------------------------------------------------------------------

    def publish(
        self, scope: PublishScope, section: BaseModel, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        assert isinstance(section, AzurePublish)
        try:
            return self._publisher.publish(scope, section, current, previous)
        except CloudRefusedError as exc:
            # A publication that cannot be made now is recorded and tried again, whatever the reason.
            raise CloudError(str(exc)) from exc

    # -- inside the build Job --------------------------------------------------------------

    def build_watcher(self, target: Target, build_id: str, attempt: str) -> Callable[[str], None] | None:
        """Azure creates the builder VM's OS disk without the VM's tags, and Packer 1.6.6 leaves
        it behind when it builds in an existing resource group: tag it with the build as soon as
        Packer names it, so that a sweep finds it."""
        tags = {BUILD_KEY: build_id, MANAGED_BY_KEY: labels.MANAGER, TARGET_KEY: target.name}
        if attempt:
            tags[ATTEMPT_KEY] = attempt

        def watch(line: str) -> None:
            match = _OS_DISK.search(line)
            if match is not None:
                disk = match.group(1)
                self.arm.change_tags(_ref(disk).subscription, disk, "Merge", tags)

        return watch

    def after_build(self, target: Target, artifacts: Sequence[tuple[str, str]]) -> list[str]:
        """Keep every new version out of its definition's latest (some Packer releases ignore
        `shared_gallery_image_version_exclude_from_latest`, packer-plugin-azure#433), then delete
        the intermediate managed image it was made from: the version no longer needs it. A
        failed deletion is reported, not fatal; the sweep of the build finds the image later."""
        done: list[str] = []
        for ident in dict.fromkeys(ident for _, ident in artifacts):
            ref = _version_ref(ident)
            version = self.version(ref)
            if version is None:
                raise CloudError(f"gallery image version {ident}, which Packer reported, does not exist")
            if not (version.publishing_profile and version.publishing_profile.exclude_from_latest):
                self.update_version(ref, {"excludeFromLatest": True})
                done.append(f"excluded {ident} from the latest of its image definition until a channel publishes it")
            storage = version.storage_profile
            source = storage.source.id if storage and storage.source else None
            build_id = _tag(version.tags, BUILD_KEY)
            if not source or not build_id or _ref(str(source)).type.lower() != MANAGED_IMAGE_TYPE:
                continue
            try:
                for gone in self._delete_managed_image(str(source), build_id):
                    done.append(f"deleted the intermediate managed image {gone.id}")
            except (CloudError, CloudRefusedError) as exc:
                done.append(f"could not delete the intermediate managed image {source} (the build's sweep will): {exc}")
        return done


def _inbound_rules(ports: Sequence[int]) -> list[dict[str, Any]]:
    """Security rules letting the checks reach the validation VM's ports."""
    return [
        {
            "name": f"allow-tcp-{port}",
            "properties": {
                "protocol": "Tcp",
                "access": "Allow",
                "direction": "Inbound",
                "priority": 100 + index,
                "sourceAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": str(port),
            },
        }
        for index, port in enumerate(ports)
    ]


def _vm_body(body: Mapping[str, Any], size: str, image: str, user: str, public_key: str, nic: str) -> dict[str, Any]:
    """A validation VM from the gallery version `image`, reached over SSH as `user` with the run's
    key; its disk and NIC go with it."""
    ssh_keys = {"publicKeys": [{"path": f"/home/{user}/.ssh/authorized_keys", "keyData": public_key}]}
    return {
        **body,
        "properties": {
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": {"id": image},
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"},
            },
            "osProfile": {
                "computerName": "validate",
                "adminUsername": user,
                "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": ssh_keys},
            },
            "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"deleteOption": "Delete"}}]},
        },
    }
