"""Resource IDs: parsed case-insensitively, as ARM does (Packer alone spells both `resourcegroups`
and `resourceGroups`), and written back in the canonical spelling of known types."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACES = (
    "Microsoft.Compute",
    "Microsoft.Network",
    "Microsoft.Resources",
    "Microsoft.KeyVault",
    "Microsoft.Storage",
)
SEGMENTS = (
    "virtualMachines",
    "networkInterfaces",
    "publicIPAddresses",
    "virtualNetworks",
    "subnets",
    "networkSecurityGroups",
    "disks",
    "snapshots",
    "images",
    "galleries",
    "versions",
    "deployments",
    "operations",
    "vaults",
    "storageAccounts",
)
_CANONICAL = {s.lower(): s for s in (*NAMESPACES, *SEGMENTS)}


def canonical(segment: str) -> str:
    return _CANONICAL.get(segment.lower(), segment)


@dataclass(frozen=True)
class ResourceId:
    """`/subscriptions/S/resourceGroups/G/providers/NS/t1/n1/t2/n2...`; a resource group itself
    has no namespace and no types."""

    subscription: str
    group: str | None = None
    namespace: str | None = None
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ResourceId:
        parts = [p for p in text.strip().strip("/").split("/") if p]
        if len(parts) < 2 or parts[0].lower() != "subscriptions":
            raise ValueError(f"not a resource id: {text!r}")
        subscription = parts[1]
        rest = parts[2:]
        group = None
        if rest[:1] and rest[0].lower() == "resourcegroups":
            if len(rest) < 2:
                raise ValueError(f"not a resource id: {text!r}")
            group, rest = rest[1], rest[2:]
        if not rest:
            return cls(subscription, group)
        if rest[0].lower() != "providers" or len(rest) < 4 or len(rest) % 2:
            raise ValueError(f"not a resource id: {text!r}")
        pairs = rest[2:]
        return cls(
            subscription,
            group,
            canonical(rest[1]),
            tuple(canonical(t) for t in pairs[0::2]),
            tuple(pairs[1::2]),
        )

    @classmethod
    def of(cls, subscription: str, group: str, full_type: str, *names: str) -> ResourceId:
        """From a type such as `Microsoft.Network/virtualNetworks/subnets` and one name per level."""
        namespace, *types = full_type.split("/")
        if len(types) != len(names) or not types:
            raise ValueError(f"{full_type} needs {len(types)} names, got {names!r}")
        return cls(subscription, group, canonical(namespace), tuple(canonical(t) for t in types), tuple(names))

    @property
    def is_group(self) -> bool:
        return self.group is not None and self.namespace is None

    @property
    def type(self) -> str:
        if self.namespace is None:
            return "Microsoft.Resources/resourceGroups" if self.group else "Microsoft.Resources/subscriptions"
        return "/".join((self.namespace, *self.types))

    @property
    def action_type(self) -> str:
        """The type as role-based access control names its actions (resource groups sit below
        subscriptions there)."""
        return "Microsoft.Resources/subscriptions/resourceGroups" if self.is_group else self.type

    @property
    def name(self) -> str:
        if self.names:
            return self.names[-1]
        return self.group or self.subscription

    @property
    def group_id(self) -> ResourceId:
        return ResourceId(self.subscription, self.group)

    @property
    def parent(self) -> ResourceId | None:
        """The enclosing resource of a nested one (a gallery of an image), else None."""
        if len(self.types) < 2:
            return None
        return ResourceId(self.subscription, self.group, self.namespace, self.types[:-1], self.names[:-1])

    def child(self, type_segment: str, name: str) -> ResourceId:
        return ResourceId(
            self.subscription,
            self.group,
            self.namespace,
            (*self.types, canonical(type_segment)),
            (*self.names, name),
        )

    @property
    def key(self) -> str:
        return str(self).lower()

    def __str__(self) -> str:
        out = f"/subscriptions/{self.subscription}"
        if self.group is not None:
            out += f"/resourceGroups/{self.group}"
        if self.namespace is not None:
            out += f"/providers/{self.namespace}"
            for type_segment, name in zip(self.types, self.names, strict=True):
                out += f"/{type_segment}/{name}"
        return out


def same(a: str, b: str) -> bool:
    return a.lower() == b.lower()
