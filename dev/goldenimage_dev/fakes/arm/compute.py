"""Microsoft.Compute: virtual machines (machines through the Hypervisor), their managed disks,
managed images (machine snapshots), galleries, image definitions and versions with replication,
and the marketplace's image versions."""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from ..hypervisor import Boot
from . import errors, regions
from .ids import ResourceId
from .kinds import Change, Context, Kind, properties, register, tags_of, timestamp
from .state import Json, MarketplaceImage, Resource

VM = "Microsoft.Compute/virtualMachines"
DISK = "Microsoft.Compute/disks"
IMAGE = "Microsoft.Compute/images"
GALLERY = "Microsoft.Compute/galleries"
GALLERY_IMAGE = "Microsoft.Compute/galleries/images"
GALLERY_VERSION = "Microsoft.Compute/galleries/images/versions"

# Power states of the instance view, and whether the machine holds cores then.
RUNNING, STARTING, STOPPED, STOPPING, DEALLOCATED, DEALLOCATING = (
    "running",
    "starting",
    "stopped",
    "stopping",
    "deallocated",
    "deallocating",
)
_DISPLAY_POWER = {
    RUNNING: "VM running",
    STARTING: "VM starting",
    STOPPED: "VM stopped",
    STOPPING: "VM stopping",
    DEALLOCATED: "VM deallocated",
    DEALLOCATING: "VM deallocating",
}


def cores(size: str) -> int:
    """The vCPUs of a VM size from its name (Standard_B1s: 1, Standard_D4s_v3: 4)."""
    match = re.match(r"^(?:Standard|Basic)_[A-Za-z]+(\d+)", size)
    return int(match.group(1)) if match else 1


def version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def _lower(value: Any) -> str:
    return str(value or "").lower()


# --- virtual machines ------------------------------------------------------------------------


class VirtualMachines(Kind):
    type = VM
    sync_actions = frozenset({"generalize"})
    _ACTIONS: ClassVar[dict[str, str]] = {"deallocate": DEALLOCATED, "poweroff": STOPPED, "start": RUNNING}

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        if existing is not None:  # an update: only what can change on a live VM
            existing.body["tags"] = tags_of(body)
            size = properties(body).get("hardwareProfile", {}).get("vmSize")
            if size:
                existing.properties.setdefault("hardwareProfile", {})["vmSize"] = size
            return Change()
        state = ctx.state
        resource = self.build(ctx, rid, body, None)
        props = resource.properties
        location = resource.body["location"]
        size = (props.get("hardwareProfile") or {}).get("vmSize")
        if not size:
            raise errors.invalid_parameter("The VM size is required.", "hardwareProfile.vmSize")
        nics = self._nics(ctx, rid, props, location)
        os_profile = props.get("osProfile") or {}
        user = os_profile.get("adminUsername")
        if not user:
            raise errors.invalid_parameter("Required parameter 'adminUsername' is missing (null).", "adminUsername")
        keys = tuple(
            k.get("keyData", "")
            for k in ((os_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys") or []
        )
        storage = props.setdefault("storageProfile", {})
        boot_image, reference, generation = resolve_image(ctx, location, storage.get("imageReference") or {})
        storage["imageReference"] = reference
        check_quota(ctx, rid.subscription, location, size)

        os_disk = storage.setdefault("osDisk", {})
        disk_name = os_disk.get("name") or f"{rid.name}_OsDisk_1_{uuid.uuid4().hex}"
        disk_id = ResourceId.of(rid.subscription, str(rid.group), DISK, disk_name)
        if state.get(disk_id) is not None:
            raise errors.conflict("ConflictingUserInput", f"Disk '{disk_name}' already exists in resource group.")
        account = (os_disk.get("managedDisk") or {}).get("storageAccountType", "Standard_LRS")
        size_gb = int(os_disk.get("diskSizeGB") or 30)
        os_disk.update(
            {
                "name": disk_name,
                "osType": os_disk.get("osType", "Linux"),
                "createOption": os_disk.get("createOption", "FromImage"),
                "caching": os_disk.get("caching", "ReadWrite"),
                "diskSizeGB": size_gb,
                "deleteOption": os_disk.get("deleteOption", "Detach"),
                "managedDisk": {"storageAccountType": account, "id": str(disk_id)},
            }
        )
        storage.setdefault("dataDisks", [])
        os_profile.pop("adminPassword", None)  # never returned
        os_profile.setdefault("computerName", rid.name)
        os_profile.setdefault("secrets", [])
        os_profile.setdefault("allowExtensionOperations", True)
        props["osProfile"] = os_profile
        props["vmId"] = str(uuid.uuid4())
        props["timeCreated"] = timestamp()
        props["provisioningState"] = "Creating"

        # The implicit OS disk: no tags of its own (the VM's are not copied), managed by the VM.
        disk = Resource(
            disk_id,
            {
                "id": str(disk_id),
                "name": disk_name,
                "type": DISK,
                "location": location,
                "tags": {},
                "managedBy": str(rid),
                "sku": {"name": account, "tier": account.split("_")[0]},
                "properties": {
                    "osType": os_disk["osType"],
                    "hyperVGeneration": generation,
                    "creationData": {"createOption": "FromImage", "imageReference": _image_ref_id(reference)},
                    "diskSizeGB": size_gb,
                    "diskState": "Attached",
                    "timeCreated": timestamp(),
                    "provisioningState": "Succeeded",
                },
            },
            {"created": timestamp()},
        )
        state.add(disk)
        for nic in nics:
            nic.extra["vm"] = str(rid)
        machine = ctx.machines.name(rid)
        request = Boot(
            name=machine,
            address=str(nics[0].extra["address"]),
            image=boot_image,
            user=str(user),
            public_keys=keys,
            hostname=str(os_profile["computerName"]),
        )
        resource.extra.update(
            {"machine": machine, "boot": request, "boot_image": boot_image, "power": STARTING, "cores": cores(size)}
        )
        state.add(resource)
        return Change(work=lambda: self._boot(ctx, resource, request))

    def _nics(self, ctx: Context, rid: ResourceId, props: Json, location: str) -> list[Resource]:
        refs = (props.get("networkProfile") or {}).get("networkInterfaces") or []
        if not refs:
            raise errors.invalid_parameter(
                "Virtual machine must have at least one network interface.", "networkProfile.networkInterfaces"
            )
        nics = []
        for ref in refs:
            nic = ctx.state.find(str(ref.get("id", "")))
            if nic is None:
                raise errors.bad_request(
                    "InvalidResourceReference", f"Resource {ref.get('id')} referenced by resource {rid} was not found."
                )
            if nic.body.get("location") != location:
                raise errors.invalid_parameter(
                    f"The network interface {nic.id} is in location '{nic.body.get('location')}', the virtual "
                    f"machine in '{location}': they must be in the same location.",
                    "networkProfile.networkInterfaces",
                )
            owner = nic.extra.get("vm")
            if owner and owner.lower() != rid.key:
                raise errors.conflict(
                    "NicInUse", f"Network interface {nic.id} is already in use by virtual machine {owner}."
                )
            nics.append(nic)
        return nics

    def _boot(self, ctx: Context, resource: Resource, request: Boot) -> None:
        try:
            ctx.machines.boot(request)
        except errors.ArmError:
            with ctx.state.lock:
                resource.properties["provisioningState"] = "Failed"
                resource.extra["power"] = STOPPED
            raise
        ctx.record("boot", resource.id)
        with ctx.state.lock:
            resource.properties["provisioningState"] = "Succeeded"
            resource.extra["power"] = RUNNING

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        out = copy.deepcopy(resource.body)
        if _lower(query.get("$expand")) == "instanceview":
            out["properties"]["instanceView"] = self.instance_view(resource)
        return out

    def instance_view(self, resource: Resource) -> Json:
        power = str(resource.extra.get("power", RUNNING))
        provisioning = str(resource.properties.get("provisioningState", "Succeeded"))
        statuses = [
            {
                "code": f"ProvisioningState/{provisioning.lower()}",
                "level": "Info" if provisioning != "Failed" else "Error",
                "displayStatus": f"Provisioning {provisioning.lower()}",
                "time": resource.extra.get("created"),
            },
            {"code": f"PowerState/{power}", "level": "Info", "displayStatus": _DISPLAY_POWER[power]},
        ]
        if resource.extra.get("generalized"):
            statuses.append({"code": "OSState/generalized", "level": "Info", "displayStatus": "VM generalized"})
        return {
            "computerName": resource.properties.get("osProfile", {}).get("computerName"),
            "osName": "Linux",
            "hyperVGeneration": "V1",
            "statuses": statuses,
        }

    def view(self, ctx: Context, resource: Resource, path: list[str], query: Mapping[str, str]) -> Json | None:
        if [p.lower() for p in path] == ["instanceview"]:
            return self.instance_view(resource)
        return None

    def action(self, ctx: Context, rid: ResourceId, name: str, body: Json) -> Change:
        resource = ctx.state.require(rid)
        action = name.lower()
        power = resource.extra.get("power")
        if action == "generalize":
            if power not in (STOPPED, DEALLOCATED):
                raise errors.conflict(
                    "OperationNotAllowed",
                    f"Operation 'generalize' is not allowed on VM '{rid.name}' since the VM is running. "
                    "Please power off explicitly in case you shut down the VM from inside the guest operating system.",
                )
            resource.extra["generalized"] = True
            ctx.record("generalize", resource.id)
            return Change()
        target = self._ACTIONS.get(action)
        if target is None:
            return super().action(ctx, rid, name, body)
        if resource.extra.get("generalized") and target == RUNNING:
            raise errors.conflict(
                "OperationNotAllowed",
                f"Operation 'start' is not allowed on VM '{rid.name}' since the VM is generalized.",
            )
        if power == target:
            return Change()
        machine = str(resource.extra["machine"])
        if target == RUNNING:
            if power == DEALLOCATED:
                check_quota(ctx, rid.subscription, str(resource.body["location"]), str(self._size(resource)))
            resource.extra["power"] = STARTING
            request = resource.extra["boot"]
            return Change(work=lambda: self._boot(ctx, resource, request))
        resource.extra["power"] = DEALLOCATING if target == DEALLOCATED else STOPPING

        def stop() -> None:
            if power in (RUNNING, STARTING):
                ctx.machines.power_off(machine)
                ctx.record("power_off", resource.id)
            with ctx.state.lock:
                resource.extra["power"] = target

        return Change(work=stop)

    @staticmethod
    def _size(resource: Resource) -> str:
        return str(resource.properties.get("hardwareProfile", {}).get("vmSize", ""))

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        state = ctx.state
        state.remove(resource.rid)
        props = resource.properties
        for ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
            nic = state.find(str(ref.get("id", "")))
            if nic is None:
                continue
            nic.extra.pop("vm", None)
            if (ref.get("properties") or {}).get("deleteOption") == "Delete" and not cascade:
                # Public IPs go along when their own deleteOption says so, after their interface.
                ips = [ip for ip in map(_ip_deleted_along, nic.properties.get("ipConfigurations", [])) if ip]
                ctx.apply_delete(nic.rid, cascade=False).run()
                for ip in ips:
                    ctx.apply_delete(ResourceId.parse(ip), cascade=False).run()
        os_disk = (props.get("storageProfile") or {}).get("osDisk") or {}
        disk = state.find(str((os_disk.get("managedDisk") or {}).get("id", "")))
        if disk is not None:
            disk.body.pop("managedBy", None)
            disk.properties["diskState"] = "Unattached"
            if os_disk.get("deleteOption") == "Delete":
                state.remove(disk.rid)
        machine = str(resource.extra.get("machine"))
        image = resource.extra.get("boot_image")

        def remove() -> None:
            ctx.machines.remove(machine)
            ctx.record("remove", resource.id)
            ctx.machines.release_image(state, image)

        return Change(work=remove)


def _ip_deleted_along(config: Json) -> str | None:
    """The public IP of a NIC's ip configuration whose deleteOption is Delete, else None."""
    ip = (config.get("properties") or {}).get("publicIPAddress") or {}
    return str(ip["id"]) if (ip.get("properties") or {}).get("deleteOption") == "Delete" else None


def check_quota(ctx: Context, subscription_id: str, location: str, size: str) -> None:
    subscription = ctx.state.subscription(subscription_id)
    limit = subscription.core_quota.get(location)
    if limit is None:
        return
    used = sum(
        int(vm.extra.get("cores", 0))
        for vm in ctx.state.of_type(VM, subscription_id)
        if vm.body.get("location") == location and vm.extra.get("power") not in (DEALLOCATED,)
    )
    wanted = cores(size)
    if used + wanted > limit:
        raise errors.conflict(
            "QuotaExceeded",
            f"Operation could not be completed as it results in exceeding approved Total Regional Cores quota. "
            f"Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: {limit}, "
            f"Current Usage: {used}, Additional Required: {wanted}, (Minimum) New Limit Required: {used + wanted}.",
        )


def _image_ref_id(reference: Json) -> Json:
    if "id" in reference:
        return {"id": reference["id"]}
    return {
        "id": f"/Subscriptions/-/Providers/Microsoft.Compute/Locations/-/Publishers/{reference.get('publisher')}"
        f"/ArtifactTypes/VMImage/Offers/{reference.get('offer')}/Skus/{reference.get('sku')}"
        f"/Versions/{reference.get('exactVersion')}"
    }


def resolve_image(ctx: Context, location: str, reference: Mapping[str, Any]) -> tuple[str | None, Json, str]:
    """The machine image a VM boots from (None: a marketplace image, the base), the image
    reference as the VM reports it, and the Hyper-V generation."""
    state = ctx.state
    if reference.get("id"):
        target = state.find(str(reference["id"]))
        kind = target.rid.type.lower() if target is not None else ""
        if target is None or kind not in (IMAGE.lower(), GALLERY_VERSION.lower(), GALLERY_IMAGE.lower()):
            raise errors.invalid_parameter(
                f"The image {reference['id']} was not found.", "properties.storageProfile.imageReference.id"
            )
        generation = "V1"
        if kind == GALLERY_IMAGE.lower():
            generation = str(target.properties.get("hyperVGeneration", "V1"))
            target = latest_version(ctx, target, location)
        elif kind == GALLERY_VERSION.lower():
            definition = state.get(target.rid.parent) if target.rid.parent else None
            generation = str((definition.properties if definition else {}).get("hyperVGeneration", "V1"))
            if not replicated(target, location):
                raise errors.invalid_parameter(
                    f"The gallery image version {target.id} is not available in region '{location}': it is not "
                    "replicated there (yet).",
                    "properties.storageProfile.imageReference.id",
                )
        image = target.extra.get("machine_image")
        if image is None:
            raise errors.conflict("ImageNotReady", f"The image {target.id} is not ready yet.")
        return str(image), {"id": str(reference["id"])}, generation
    publisher, offer, sku = (str(reference.get(k, "")) for k in ("publisher", "offer", "sku"))
    version = str(reference.get("version") or "latest")
    found = find_marketplace(ctx, location, publisher, offer, sku)
    exact = max(found.versions, key=version_key) if found and version.lower() == "latest" else version
    if found is None or exact not in found.versions:
        raise errors.ArmError(
            404,
            "PlatformImageNotFound",
            f"The platform image '{publisher}:{offer}:{sku}:{version}' is not available. Verify that all fields in "
            "the storage profile are correct.",
        )
    return None, {**dict(reference), "version": version, "exactVersion": exact}, found.hyper_v_generation


def find_marketplace(ctx: Context, location: str, publisher: str, offer: str, sku: str) -> MarketplaceImage | None:
    for image in ctx.state.marketplace:
        if (
            image.publisher.lower() == publisher.lower()
            and image.offer.lower() == offer.lower()
            and image.sku.lower() == sku.lower()
            and (image.locations is None or location in image.locations)
        ):
            return image
    return None


# --- disks -----------------------------------------------------------------------------------


class Disks(Kind):
    type = DISK

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        if existing is None:
            option = (props.get("creationData") or {}).get("createOption")
            if not option:
                raise errors.invalid_parameter("Required parameter 'createOption' is missing.", "creationData")
            props.setdefault("diskSizeGB", 30)
            props["diskState"] = "Unattached"
            props["timeCreated"] = timestamp()
            resource.body.setdefault("sku", {"name": "Standard_LRS", "tier": "Standard"})
        else:
            for key in ("managedBy",):
                if key in existing.body:
                    resource.body[key] = existing.body[key]
            props["diskState"] = existing.properties.get("diskState", "Unattached")
        ctx.state.add(resource)
        return Change()

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        owner = resource.body.get("managedBy")
        if owner and not cascade and ctx.state.find(str(owner)) is not None:
            raise errors.conflict("OperationNotAllowed", f"Disk {resource.rid.name} is attached to VM {owner}.")
        return super().delete(ctx, resource, cascade=cascade)


# --- managed images --------------------------------------------------------------------------


class Images(Kind):
    type = IMAGE

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        if existing is not None:  # only the tags of an image change
            existing.body["tags"] = resource.body["tags"]
            return Change()
        props = resource.properties
        source_id = str((props.get("sourceVirtualMachine") or {}).get("id", ""))
        if not source_id:
            raise errors.unsupported("A managed image from anything but sourceVirtualMachine")
        vm = ctx.state.find(source_id)
        if vm is None or vm.rid.type.lower() != VM.lower():
            raise errors.invalid_parameter(
                f"The source virtual machine {source_id} was not found.", "sourceVirtualMachine"
            )
        if vm.extra.get("power") not in (STOPPED, DEALLOCATED):
            raise errors.conflict(
                "OperationNotAllowed",
                f"Operation 'Create Image' is not allowed on VM '{vm.rid.name}' since the VM is running. "
                "Please stop or deallocate the VM first.",
            )
        if not vm.extra.get("generalized"):
            raise errors.conflict(
                "OperationNotAllowed",
                f"The source virtual machine '{vm.id}' must be generalized to create an image. Please use sysprep "
                "(Windows) or 'waagent -deprovision' (Linux), then mark it generalized.",
            )
        os_disk = vm.properties["storageProfile"]["osDisk"]
        storage = props.setdefault("storageProfile", {})
        storage.setdefault("zoneResilient", False)
        storage["osDisk"] = {
            "osType": os_disk.get("osType", "Linux"),
            "osState": "Generalized",
            "managedDisk": {"id": os_disk["managedDisk"]["id"]},
            "caching": os_disk.get("caching", "ReadWrite"),
            "storageAccountType": os_disk["managedDisk"].get("storageAccountType", "Standard_LRS"),
            "diskSizeGB": os_disk.get("diskSizeGB", 30),
        }
        storage.setdefault("dataDisks", [])
        props.setdefault("hyperVGeneration", "V1")
        props["provisioningState"] = "Creating"
        ctx.state.add(resource)
        machine = str(vm.extra["machine"])

        def capture() -> None:
            image = ctx.machines.snapshot(machine)
            ctx.record("snapshot", resource.id)
            with ctx.state.lock:
                resource.extra["machine_image"] = image
                resource.properties["provisioningState"] = "Succeeded"

        return Change(work=capture)

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        ctx.state.remove(resource.rid)
        image = resource.extra.get("machine_image")
        return Change(work=lambda: ctx.machines.release_image(ctx.state, image))


# --- galleries -------------------------------------------------------------------------------


def _nested_in_use(ctx: Context, resource: Resource, segment: str, cascade: bool) -> None:
    if not cascade and ctx.state.children(resource.rid, segment):
        raise errors.conflict(
            "CannotDeleteResource",
            f"Can not delete resource before nested resources are deleted: {resource.rid.type} '{resource.rid.name}' "
            f"still has {segment}.",
        )


class Galleries(Kind):
    type = GALLERY

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        resource.properties["identifier"] = {"uniqueName": f"{rid.subscription}-{rid.name.upper()}"}
        ctx.state.add(resource)
        return Change()

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        _nested_in_use(ctx, resource, "images", cascade)
        return super().delete(ctx, resource, cascade=cascade)


class GalleryImages(Kind):
    """Image definitions. `allowed_regions` (seeded from Python, not part of ARM's API) limits the
    regions versions may replicate to."""

    type = GALLERY_IMAGE

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        if props.get("osType") not in ("Linux", "Windows"):
            raise errors.invalid_parameter("The osType must be 'Linux' or 'Windows'.", "galleryImage.properties.osType")
        if props.get("osState") not in ("Generalized", "Specialized"):
            raise errors.invalid_parameter(
                "The osState must be 'Generalized' or 'Specialized'.", "galleryImage.properties.osState"
            )
        identifier = props.get("identifier") or {}
        if not all(identifier.get(k) for k in ("publisher", "offer", "sku")):
            raise errors.invalid_parameter(
                "The identifier needs a publisher, an offer and a sku.", "galleryImage.properties.identifier"
            )
        props.setdefault("hyperVGeneration", "V1")
        props.setdefault("architecture", "x64")
        ctx.state.add(resource)
        return Change()

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        _nested_in_use(ctx, resource, "versions", cascade)
        return super().delete(ctx, resource, cascade=cascade)


def replicated(version: Resource, location: str) -> bool:
    done_at = version.extra.get("replication", {}).get(regions.normalize(location))
    return done_at is not None and time.monotonic() >= done_at


def replication_complete(version: Resource) -> bool:
    return all(time.monotonic() >= t for t in version.extra.get("replication", {}).values())


def latest_version(ctx: Context, definition: Resource, location: str) -> Resource:
    """What an image definition's ID boots: its highest version not excluded from latest."""
    candidates = [
        v
        for v in ctx.state.children(definition.rid, "versions")
        if not v.properties.get("publishingProfile", {}).get("excludeFromLatest", False)
        and v.extra.get("machine_image")
    ]
    if not candidates:
        raise errors.invalid_parameter(
            f"The gallery image {definition.id} has no version that may be used as its latest.",
            "properties.storageProfile.imageReference.id",
        )
    newest = max(candidates, key=lambda v: version_key(v.rid.name))
    if not replicated(newest, location):
        raise errors.invalid_parameter(
            f"The latest version {newest.rid.name} of {definition.id} is not replicated to region '{location}'.",
            "properties.storageProfile.imageReference.id",
        )
    return newest


class GalleryImageVersions(Kind):
    type = GALLERY_VERSION

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        if not re.fullmatch(r"\d+\.\d+\.\d+", rid.name):
            raise errors.invalid_parameter(
                f"The gallery image version name '{rid.name}' is invalid: it must follow Major(int32).Minor(int32)."
                "Patch(int32), e.g. 1.0.0.",
                "galleryImageVersionName",
            )
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        profile = props.setdefault("publishingProfile", {})
        storage = props.setdefault("storageProfile", {})
        source_id = str(
            (storage.get("source") or {}).get("id")
            or ((profile.get("source") or {}).get("managedImage") or {}).get("id")
            or ""
        )
        source = ctx.state.find(source_id) if source_id else None
        if source is None or source.rid.type.lower() != IMAGE.lower():
            raise errors.invalid_parameter(
                f"The source managed image '{source_id}' was not found.", "galleryImageVersion.storageProfile.source.id"
            )
        if source.extra.get("machine_image") is None:
            raise errors.conflict("ImageNotReady", f"The source image {source.id} is not ready yet.")
        before = ((existing.properties.get("storageProfile") or {}).get("source") or {}).get("id") if existing else None
        if before and str(before).lower() != source_id.lower():
            # A version's content is immutable: another build publishing the same version name fails.
            raise errors.conflict(
                "PropertyChangeNotAllowed",
                "Changing property 'galleryImageVersion.properties.storageProfile.source.id' is not allowed.",
            )
        storage["source"] = {"id": source_id}
        storage.setdefault("osDiskImage", {"sizeInGB": 30, "hostCaching": "ReadWrite"})
        profile.setdefault("replicaCount", 1)
        profile.setdefault("excludeFromLatest", False)
        profile.setdefault("storageAccountType", "Standard_LRS")
        profile["publishedDate"] = timestamp()
        replication = dict(existing.extra.get("replication", {})) if existing else {}
        profile["targetRegions"] = self._regions(ctx, resource, profile, replication)
        resource.extra["replication"] = replication
        resource.extra["machine_image"] = source.extra["machine_image"]
        resource.extra["updating"] = existing is not None
        props.setdefault("safetyProfile", {"allowDeletionOfReplicatedLocations": True})
        ctx.state.add(resource)
        return Change(ready=lambda: replication_complete(resource))

    def _regions(self, ctx: Context, resource: Resource, profile: Json, replication: dict[str, float]) -> list[Json]:
        """The target regions, checked, and when each finishes replicating (new ones from now)."""
        location = str(resource.body["location"])
        given = profile.get("targetRegions") or [{"name": location}]
        subscription = ctx.state.subscription(resource.rid.subscription)
        definition = ctx.state.get(resource.rid.parent) if resource.rid.parent else None
        allowed = definition.extra.get("allowed_regions") if definition else None
        names = [regions.normalize(str(r.get("name", ""))) for r in given]
        for name, region in zip(names, given, strict=True):
            if name not in subscription.locations or (allowed is not None and name not in allowed):
                raise errors.invalid_parameter(
                    f"Replication to region '{region.get('name')}' is not allowed for gallery image "
                    f"'{resource.rid.names[1]}': allowed are {', '.join(allowed or subscription.locations)}.",
                    "galleryImageVersion.properties.publishingProfile.targetRegions",
                )
        if location not in names:
            raise errors.invalid_parameter(
                f"The gallery image version's own location '{location}' must be one of its target regions.",
                "galleryImageVersion.properties.publishingProfile.targetRegions",
            )
        delay = ctx.state.settings.replication_seconds
        for name in list(replication):
            if name not in names:
                del replication[name]
        for name in names:
            replication.setdefault(name, time.monotonic() + delay)
        return [
            {
                **region,
                "name": name,
                "regionalReplicaCount": region.get("regionalReplicaCount", profile["replicaCount"]),
                "storageAccountType": region.get("storageAccountType", profile["storageAccountType"]),
            }
            for name, region in zip(names, given, strict=True)
        ]

    def update(self, ctx: Context, resource: Resource, patch: Json) -> Change:
        if "tags" in patch:
            resource.body["tags"] = tags_of(patch)
        profile_patch = properties(patch).get("publishingProfile") or {}
        profile = resource.properties.setdefault("publishingProfile", {})
        for key in ("excludeFromLatest", "endOfLifeDate", "replicaCount", "storageAccountType"):
            if key in profile_patch:
                profile[key] = profile_patch[key]
        if "targetRegions" in profile_patch:
            profile["targetRegions"] = profile_patch["targetRegions"]
            profile["targetRegions"] = self._regions(ctx, resource, profile, resource.extra["replication"])
        if "safetyProfile" in properties(patch):
            resource.properties["safetyProfile"] = properties(patch)["safetyProfile"]
        resource.extra["updating"] = True
        return Change(ready=lambda: replication_complete(resource))

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        out = copy.deepcopy(resource.body)
        props = out["properties"]
        complete = replication_complete(resource)
        props["provisioningState"] = (
            "Succeeded" if complete else ("Updating" if resource.extra.get("updating") else "Creating")
        )
        profile = props["publishingProfile"]
        profile["targetRegions"] = [{**r, "name": regions.display(r["name"])} for r in profile["targetRegions"]]
        if _lower(query.get("$expand")) == "replicationstatus":
            summary = []
            for name, done_at in resource.extra.get("replication", {}).items():
                left = done_at - time.monotonic()
                delay = ctx.state.settings.replication_seconds or 1.0
                progress = 100 if left <= 0 else max(0, min(99, int(100 * (1 - left / delay))))
                summary.append(
                    {
                        "region": regions.display(name),
                        "state": "Completed" if left <= 0 else "Replicating",
                        "details": "",
                        "progress": progress,
                    }
                )
            props["replicationStatus"] = {
                "aggregatedState": "Completed" if complete else "InProgress",
                "summary": summary,
            }
        return out

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        ctx.state.remove(resource.rid)
        image = resource.extra.get("machine_image")
        return Change(work=lambda: ctx.machines.release_image(ctx.state, image))


# --- the marketplace -------------------------------------------------------------------------


def marketplace(ctx: Context, subscription: str, location: str, path: list[str], query: Mapping[str, str]) -> Any:
    """GET .../locations/L/publishers/P/artifacttypes/vmimage/offers/O/skus/S/versions[/V], and
    the lists of offers and skus above it. `path` starts after `publishers`. Versions list in
    ascending order unless `$orderby=name desc`; `$top` limits them."""
    location = regions.normalize(location)
    low = [p.lower() for p in path]
    images = [i for i in ctx.state.marketplace if i.locations is None or location in i.locations]

    def entry(name: str, tail: str) -> Json:
        return {
            "location": location,
            "name": name,
            "id": f"/Subscriptions/{subscription}/Providers/Microsoft.Compute/Locations/{location}/Publishers/{tail}",
        }

    if len(path) < 3 or low[1:3] != ["artifacttypes", "vmimage"]:
        raise errors.unsupported(f"The marketplace path {'/'.join(path)}")
    publisher = path[0]
    images = [i for i in images if i.publisher.lower() == publisher.lower()]
    base = f"{publisher}/ArtifactTypes/VMImage/Offers"
    if low[3:] == ["offers"]:
        return [entry(o, f"{base}/{o}") for o in sorted({i.offer for i in images})]
    if len(path) < 5 or low[3] != "offers":
        raise errors.unsupported(f"The marketplace path {'/'.join(path)}")
    offer = path[4]
    images = [i for i in images if i.offer.lower() == offer.lower()]
    if low[5:] == ["skus"]:
        if not images:
            raise errors.ArmError(404, "NotFound", f"Artifact: VMImage was not found (offer '{offer}').")
        return [entry(i.sku, f"{base}/{offer}/Skus/{i.sku}") for i in images]
    if len(path) < 8 or low[5] != "skus" or low[7] != "versions":
        raise errors.unsupported(f"The marketplace path {'/'.join(path)}")
    sku = path[6]
    found = next((i for i in images if i.sku.lower() == sku.lower()), None)
    if found is None:
        raise errors.ArmError(404, "NotFound", "Artifact: VMImage was not found.")
    versions = sorted(found.versions, key=version_key)
    if len(path) == 8:
        if _lower(query.get("$orderby")).replace(" ", "") == "namedesc":
            versions.reverse()
        if query.get("$top"):
            versions = versions[: int(query["$top"])]
        return [entry(v, f"{base}/{offer}/Skus/{sku}/Versions/{v}") for v in versions]
    version = path[8]
    if version not in versions:
        raise errors.ArmError(404, "NotFound", "Artifact: VMImage was not found.")
    return {
        **entry(version, f"{base}/{offer}/Skus/{sku}/Versions/{version}"),
        "properties": {
            "osDiskImage": {"operatingSystem": "Linux", "sizeInGb": 30},
            "dataDiskImages": [],
            "hyperVGeneration": found.hyper_v_generation,
            "architecture": "x64",
            "automaticOSUpgradeProperties": {"automaticOSUpgradeSupported": False},
            "imageDeprecationStatus": {"imageState": "Active"},
        },
    }


for _kind in (VirtualMachines(), Disks(), Images(), Galleries(), GalleryImages(), GalleryImageVersions()):
    register(_kind)
