"""Microsoft.Network: public IP addresses, virtual networks with their subnets, and network
interfaces. A network interface takes its private address from the Hypervisor; a public IP
reports the address of the machine behind it (or the address the test configured), and
nothing still in use can be deleted, as in Azure."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Mapping

from . import errors
from .compute import DEALLOCATED
from .ids import ResourceId
from .kinds import Change, Context, Kind, register
from .state import Json, Resource

PUBLIC_IP = "Microsoft.Network/publicIPAddresses"
VNET = "Microsoft.Network/virtualNetworks"
SUBNET = "Microsoft.Network/virtualNetworks/subnets"
NIC = "Microsoft.Network/networkInterfaces"


def _nic_configs(ctx: Context) -> list[tuple[Resource, Json]]:
    """Every ip configuration of every network interface, with its interface."""
    return [(nic, config) for nic in ctx.state.of_type(NIC) for config in nic.properties.get("ipConfigurations", [])]


def _refers(config: Json, key: str, target: Resource) -> bool:
    ref = (config.get("properties") or {}).get(key) or {}
    return str(ref.get("id", "")).lower() == target.rid.key


class PublicIpAddresses(Kind):
    type = PUBLIC_IP

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        sku = resource.body.setdefault("sku", {"name": "Basic", "tier": "Regional"})
        props.setdefault("publicIPAllocationMethod", "Static" if sku.get("name") == "Standard" else "Dynamic")
        props.setdefault("publicIPAddressVersion", "IPv4")
        props.setdefault("idleTimeoutInMinutes", 4)
        props.pop("ipAddress", None)  # assigned by Azure, never by the caller
        props["resourceGuid"] = existing.properties.get("resourceGuid") if existing else str(uuid.uuid4())
        ctx.state.add(resource)
        return Change()

    def _user(self, ctx: Context, resource: Resource) -> tuple[Resource, Json] | None:
        return next(((n, c) for n, c in _nic_configs(ctx) if _refers(c, "publicIPAddress", resource)), None)

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        out = copy.deepcopy(resource.body)
        props = out["properties"]
        user = self._user(ctx, resource)
        address = self.address(ctx, resource, user[0] if user else None)
        if address:
            props["ipAddress"] = address
        if user:
            props["ipConfiguration"] = {"id": f"{user[0].id}/ipConfigurations/{user[1].get('name')}"}
        return out

    def address(self, ctx: Context, resource: Resource, nic: Resource | None) -> str | None:
        """A dynamic address exists while a machine holds it; a static one always."""
        configured = ctx.state.settings.public_address
        static = resource.properties.get("publicIPAllocationMethod") == "Static"
        if nic is None:
            return configured if static else None
        vm = ctx.state.find(str(nic.extra.get("vm", "")))
        if not static and (vm is None or vm.extra.get("power") == DEALLOCATED):
            return None
        return configured or str(nic.extra.get("address"))

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        user = self._user(ctx, resource)
        if user and not cascade:
            raise errors.bad_request(
                "PublicIPAddressCannotBeDeleted",
                f"Public IP address {resource.id} can not be deleted since it is still allocated to resource "
                f"{user[0].id}/ipConfigurations/{user[1].get('name')}. In order to delete the public IP, "
                "disassociate/detach the Public IP address from the resource.",
            )
        return super().delete(ctx, resource, cascade=cascade)


def _subnet_users(ctx: Context, subnet: Resource) -> list[str]:
    return [f"{n.id}/ipConfigurations/{c.get('name')}" for n, c in _nic_configs(ctx) if _refers(c, "subnet", subnet)]


def _subnet_in_use(subnet: Resource, users: list[str]) -> errors.ArmError:
    return errors.bad_request(
        "InUseSubnetCannotBeDeleted",
        f"Subnet {subnet.rid.name} is in use by {users[0]} and cannot be deleted. In order to delete the subnet, "
        "delete all the resources within the subnet. See aka.ms/deletesubnet.",
    )


class VirtualNetworks(Kind):
    """Subnets given inline are stored as child resources, so that they can also be read and
    written on their own, as the API allows."""

    type = VNET

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        subnets = props.pop("subnets", None)
        props.setdefault("addressSpace", {"addressPrefixes": []})
        props["resourceGuid"] = existing.properties.get("resourceGuid") if existing else str(uuid.uuid4())
        ctx.state.add(resource)
        if subnets is not None:
            wanted = {str(s.get("name", "")).lower() for s in subnets}
            for old in ctx.state.children(rid, "subnets"):
                if old.rid.name.lower() not in wanted:
                    users = _subnet_users(ctx, old)
                    if users:
                        raise _subnet_in_use(old, users)
                    ctx.state.remove(old.rid)
            for subnet in subnets:
                ctx.apply_put(rid.child("subnets", str(subnet.get("name", ""))), subnet)
        return Change()

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        out = copy.deepcopy(resource.body)
        out["properties"]["subnets"] = [
            SUBNETS.render(ctx, s, query) for s in ctx.state.children(resource.rid, "subnets")
        ]
        return out

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        subnets = ctx.state.children(resource.rid, "subnets")
        for subnet in subnets:
            users = _subnet_users(ctx, subnet)
            if users and not cascade:
                raise _subnet_in_use(subnet, users)
        for subnet in subnets:
            ctx.state.remove(subnet.rid)
        return super().delete(ctx, resource, cascade=cascade)


class Subnets(Kind):
    type = SUBNET
    tracked = False

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        if not props.get("addressPrefix") and not props.get("addressPrefixes"):
            raise errors.invalid_parameter("A subnet needs an addressPrefix.", "properties.addressPrefix")
        ctx.state.add(resource)
        return Change()

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        out = copy.deepcopy(resource.body)
        users = _subnet_users(ctx, resource)
        if users:
            out["properties"]["ipConfigurations"] = [{"id": u} for u in users]
        return out

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        users = _subnet_users(ctx, resource)
        if users and not cascade:
            raise _subnet_in_use(resource, users)
        return super().delete(ctx, resource, cascade=cascade)


class NetworkInterfaces(Kind):
    type = NIC

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        resource = self.build(ctx, rid, body, existing)
        props = resource.properties
        configs = props.get("ipConfigurations") or []
        if not configs:
            raise errors.invalid_parameter("A network interface needs an ip configuration.", "ipConfigurations")
        for index, config in enumerate(configs):
            config_props = config.setdefault("properties", {})
            config.setdefault("name", f"ipconfig{index + 1}")
            config["id"] = f"{rid}/ipConfigurations/{config['name']}"
            config["type"] = "Microsoft.Network/networkInterfaces/ipConfigurations"
            subnet_id = str((config_props.get("subnet") or {}).get("id", ""))
            subnet = ctx.state.find(subnet_id)
            if subnet is None or subnet.rid.type.lower() != SUBNET.lower():
                raise errors.bad_request(
                    "InvalidResourceReference", f"Resource {subnet_id} referenced by resource {rid} was not found."
                )
            pip_id = (config_props.get("publicIPAddress") or {}).get("id")
            if pip_id:
                pip = ctx.state.find(str(pip_id))
                if pip is None:
                    raise errors.bad_request(
                        "InvalidResourceReference", f"Resource {pip_id} referenced by resource {rid} was not found."
                    )
                for other, other_config in _nic_configs(ctx):
                    if other.rid.key != rid.key and _refers(other_config, "publicIPAddress", pip):
                        raise errors.bad_request(
                            "PublicIPAddressInUse", f"Public IP address {pip.id} is already in use by {other.id}."
                        )
            config_props.setdefault("privateIPAllocationMethod", "Dynamic")
            config_props.setdefault("privateIPAddressVersion", "IPv4")
            config_props.setdefault("primary", index == 0)
            config_props["provisioningState"] = "Succeeded"
        address = existing.extra.get("address") if existing else None
        if address is None:
            address = ctx.machines.allocate()
            ctx.record("allocate", f"{rid} {address}")
        for config in configs:
            config["properties"]["privateIPAddress"] = address
        resource.extra["address"] = address
        digest = hashlib.sha256(rid.key.encode()).hexdigest()
        props["macAddress"] = "-".join(["00", "0D", "3A", *(digest[i : i + 2].upper() for i in (0, 2, 4))])
        props.setdefault("enableAcceleratedNetworking", False)
        props.setdefault("enableIPForwarding", False)
        props["primary"] = True
        props["resourceGuid"] = existing.properties.get("resourceGuid") if existing else str(uuid.uuid4())
        ctx.state.add(resource)
        return Change()

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        out = copy.deepcopy(resource.body)
        vm = resource.extra.get("vm")
        if vm:
            out["properties"]["virtualMachine"] = {"id": vm}
        return out

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        vm = resource.extra.get("vm")
        if vm and not cascade and ctx.state.find(str(vm)) is not None:
            raise errors.bad_request(
                "NicInUse",
                f"Network Interface {resource.id} is used by existing resource {vm}. In order to delete the network "
                "interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
            )
        ctx.state.remove(resource.rid)
        address = resource.extra.get("address")
        if address:
            ctx.machines.release(str(address))
            ctx.record("release", f"{resource.id} {address}")
        return Change()


SUBNETS = Subnets()
for _kind in (PublicIpAddresses(), VirtualNetworks(), SUBNETS, NetworkInterfaces()):
    register(_kind)
