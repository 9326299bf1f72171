"""The fake's state and what the API does to it, with the machines behind it.

Resources are kept as their API representation (what GET returns), keyed by project, zone and
name; what the API does not show (which machine a disk holds, which machine image an image is)
is kept beside them. Every mutation answers with an operation that is DONE at once: clients poll
operations every couple of seconds otherwise.

The machines: an instance insert boots one through the Hypervisor at an address it allocates;
an instance delete powers it off when its boot disk survives (Packer's `autoDelete: false`, so
that it can make the image from the disk afterwards) and removes it otherwise; an image insert
from that disk snapshots it; a disk delete removes it; an image delete forgets its machine image
once no other image shares it. The Hypervisor is called outside the lock, so a slow boot does
not hold up other requests.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

from ..hypervisor import Boot, Hypervisor, HypervisorError, Recorder
from . import catalog, filters
from .errors import (
    ApiError,
    already_exists,
    forbidden,
    in_use,
    invalid,
    invalid_field,
    not_found,
    required,
    stale_fingerprint,
)
from .links import Link, last, parse, url
from .routes import API_HOSTS, METADATA_HOST, TOKEN_HOST, ComputeApi, MetadataApi
from .tokens import Tokens

Doc = dict[str, Any]
_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_KEY = re.compile(r"[\w-]{1,63}", re.ASCII)
_LABEL_VALUE = re.compile(r"[\w-]{0,63}", re.ASCII)
_DEPRECATION_STATES = ("ACTIVE", "DEPRECATED", "OBSOLETE", "DELETED")
_MAX_RESULTS = 500
QUOTA_METRICS = ("CPUS", "INSTANCES", "IMAGES")
DEFAULT_USER = "root"  # when `ssh-keys` names no user: nobody can log in, as on GCE


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def fingerprint(value: object) -> str:
    return base64.b64encode(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()[:8]).decode()


def check_name(name: object, field: str = "resource.name") -> str:
    if not isinstance(name, str) or not name:
        raise required(field)
    if not _NAME.fullmatch(name):
        raise invalid_field(field, name, f"Must be a match of regex '{_NAME.pattern}'")
    return name


def check_labels(labels: object, field: str = "resource.labels") -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid_field(field, labels, "Labels must be a map of strings.")
    for key, value in labels.items():
        if not (isinstance(key, str) and key[:1].islower() and key == key.lower() and _LABEL_KEY.fullmatch(key)):
            raise invalid_field(
                f"{field}.{key}",
                key,
                "Label keys must start with a lowercase letter and "
                "contain only lowercase letters, digits, underscores and dashes (at most 63).",
            )
        if not (isinstance(value, str) and value == value.lower() and _LABEL_VALUE.fullmatch(value)):
            raise invalid_field(
                f"{field}.{key}",
                value,
                "Label values may contain only lowercase letters, digits, underscores and dashes (at most 63).",
            )
    return dict(labels)


def ssh_keys(metadata: Iterable[Doc]) -> tuple[str, tuple[str, ...]]:
    """The login user and its keys from metadata `ssh-keys` lines `user:key` (the first user
    named; Packer 1.6.6 with no communicator writes `:key`, which no user gets on GCE)."""
    lines = [
        line.strip()
        for item in metadata
        if item.get("key") == "ssh-keys"
        for line in str(item.get("value") or "").splitlines()
        if ":" in line
    ]
    pairs = [line.split(":", 1) for line in lines]
    users = [user for user, _ in pairs if user]
    if not users:
        return DEFAULT_USER, ()
    return users[0], tuple(key.strip() for user, key in pairs if user == users[0])


@dataclass
class _Quota:
    limit: float


class ComputeEngine:
    """A stateful Compute Engine. Seed it (`add_project`, `add_image`, `service_account_key`),
    serve it (`routes()` for the edge), look into it (`state()`, `image()`, ...), and make it fail
    (`deny`, `set_quota`)."""

    def __init__(self, hypervisor: Hypervisor | None = None) -> None:
        self.hypervisor: Hypervisor = hypervisor if hypervisor is not None else Recorder()
        self.tokens = Tokens()
        self.metadata_email: str | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1_000_001)
        self._projects: dict[str, Doc] = {}
        self._images: dict[tuple[str, str], Doc] = {}
        self._instances: dict[tuple[str, str, str], Doc] = {}
        self._disks: dict[tuple[str, str, str], Doc] = {}
        self._operations: dict[tuple[str, str, str], Doc] = {}
        self._requests: dict[str, Doc] = {}  # requestId: the operation it made
        self._machine_images: dict[tuple[str, str], str | None] = {}  # image: Hypervisor image
        self._machines: dict[tuple[str, str, str], str] = {}  # disk: the machine on it
        self._addresses: dict[tuple[str, str, str], str] = {}  # instance: its address
        self._denied: set[tuple[str, str]] = set()
        self._quotas: dict[tuple[str, str], _Quota] = {}
        self._created = itertools.count()
        self.app = ComputeApi(self)
        self.metadata = MetadataApi(self)

    def routes(self) -> dict[str, WSGIApplication]:
        """The host names this fake answers for, for `Edge.start`."""
        return {**dict.fromkeys((*API_HOSTS, TOKEN_HOST), self.app), METADATA_HOST: self.metadata}

    # Seeding, faults and inspection: the Python API for tests.

    def add_project(self, project: str) -> Doc:
        check_name(project, "project")
        with self._lock:
            if project not in self._projects:
                self._projects[project] = {
                    "kind": "compute#project",
                    "id": str(next(self._ids)),
                    "name": project,
                    "creationTimestamp": now(),
                    "defaultServiceAccount": f"{project}-compute@developer.gserviceaccount.com",
                    "commonInstanceMetadata": {"kind": "compute#metadata", "fingerprint": fingerprint([])},
                    "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
                    "selfLink": url(f"projects/{project}"),
                }
            return copy.deepcopy(self._projects[project])

    def service_account_key(self, project: str, account: str = "packer") -> dict[str, str]:
        """A new key (the JSON document) for `account` in `project`, which is added if new."""
        self.add_project(project)
        key = self.tokens.create_key(project, account)
        if self.metadata_email is None:
            self.metadata_email = key["client_email"]
        return key

    def write_service_account_key(self, path: Path, project: str, account: str = "packer") -> Path:
        path.write_text(json.dumps(self.service_account_key(project, account), indent=2))
        path.chmod(0o600)
        return path

    def add_image(
        self,
        project: str,
        name: str,
        *,
        family: str | None = None,
        created: datetime.datetime | None = None,
        labels: Mapping[str, str] | None = None,
        disk_size_gb: int = 10,
        description: str = "",
        machine_image: str | None = None,
    ) -> Doc:
        """An image as if made long ago (a public one such as debian-cloud's, when
        `machine_image` is None: instances boot the Hypervisor's base image)."""
        self.add_project(project)
        check_name(name)
        stamp = (created or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
        doc: Doc = {
            "kind": "compute#image",
            "id": str(next(self._ids)),
            "creationTimestamp": stamp.isoformat(timespec="milliseconds"),
            "name": name,
            "description": description,
            "sourceType": "RAW",
            "status": "READY",
            "archiveSizeBytes": str(disk_size_gb * 2**28),
            "diskSizeGb": str(disk_size_gb),
            "labels": check_labels(dict(labels or {})),
            "labelFingerprint": fingerprint(dict(labels or {})),
            "licenses": [url(f"projects/{project}/global/licenses/{family or name}")],
            "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "UEFI_COMPATIBLE"}],
            "storageLocations": ["us", "eu", "asia"],
            "selfLink": url(f"projects/{project}/global/images/{name}"),
        }
        if family:
            doc["family"] = family
        with self._lock:
            if (project, name) in self._images:
                raise already_exists(f"projects/{project}/global/images/{name}")
            self._images[project, name] = doc
            self._machine_images[project, name] = machine_image
            doc["_order"] = next(self._created)
        return self._public(doc)

    def deny(self, project: str, permission: str) -> None:
        """Requests needing `permission` (e.g. `compute.images.create`, `*` for all) on
        `project` get 403 until `allow`."""
        with self._lock:
            self._denied.add((project, permission))

    def allow(self, project: str, permission: str) -> None:
        with self._lock:
            self._denied.discard((project, permission))

    def set_quota(self, project: str, metric: str, limit: float | None) -> None:
        """Limit `metric` (CPUS or INSTANCES per region, IMAGES per project); None lifts it. An
        insert beyond the limit fails as on GCE: its operation ends with QUOTA_EXCEEDED."""
        if metric not in QUOTA_METRICS:
            raise ValueError(f"unknown quota metric {metric!r}: one of {', '.join(QUOTA_METRICS)}")
        with self._lock:
            if limit is None:
                self._quotas.pop((project, metric), None)
            else:
                self._quotas[project, metric] = _Quota(limit)

    def image(self, project: str, name: str) -> Doc | None:
        with self._lock:
            doc = self._images.get((project, name))
            return self._public(doc) if doc else None

    def machine_image(self, project: str, name: str) -> str | None:
        """The Hypervisor's image behind an image (None for seeded public ones)."""
        with self._lock:
            return self._machine_images.get((project, name))

    def images(self, project: str | None = None) -> list[Doc]:
        with self._lock:
            return [self._public(d) for (p, _), d in sorted(self._images.items()) if project in (None, p)]

    def instances(self, project: str | None = None) -> list[Doc]:
        with self._lock:
            return [self._public(d) for (p, _, _), d in sorted(self._instances.items()) if project in (None, p)]

    def disks(self, project: str | None = None) -> list[Doc]:
        with self._lock:
            return [self._public(d) for (p, _, _), d in sorted(self._disks.items()) if project in (None, p)]

    def state(self) -> Doc:
        """Everything, as JSON: what `GET /_fake/state` answers."""
        with self._lock:
            return {
                "projects": sorted(self._projects),
                "serviceAccounts": self.tokens.accounts(),
                "images": self.images(),
                "instances": self.instances(),
                "disks": self.disks(),
                "operations": len(self._operations),
                "machineImages": {
                    f"projects/{p}/global/images/{n}": m for (p, n), m in sorted(self._machine_images.items())
                },
                "machines": {f"projects/{p}/zones/{z}/disks/{n}": m for (p, z, n), m in sorted(self._machines.items())},
                "denied": sorted(f"{p} {perm}" for p, perm in self._denied),
            }

    # Checks the routes make before any operation.

    def require_project(self, project: str) -> None:
        with self._lock:
            if project not in self._projects:
                raise not_found(f"projects/{project}")

    def authorize(self, project: str, permission: str, resource: str) -> None:
        with self._lock:
            if (project, permission) in self._denied or (project, "*") in self._denied:
                raise forbidden(permission, resource)

    def require_zone(self, project: str, zone: str) -> None:
        if zone not in catalog.zones():
            raise not_found(f"projects/{project}/zones/{zone}")

    def require_region(self, project: str, region: str) -> None:
        if region not in catalog.REGIONS:
            raise not_found(f"projects/{project}/regions/{region}")

    # Projects, zones, regions, machine types.

    def get_project(self, project: str) -> Doc:
        with self._lock:
            return copy.deepcopy(self._projects[project])

    def get_zone(self, project: str, zone: str) -> Doc:
        self.require_zone(project, zone)
        return catalog.zone_doc(project, zone)

    def list_zones(self, project: str, query: Mapping[str, str]) -> Doc:
        items = [catalog.zone_doc(project, zone) for zone in catalog.zones()]
        return page("compute#zoneList", f"projects/{project}/zones", items, query)

    def get_region(self, project: str, region: str) -> Doc:
        self.require_region(project, region)
        return catalog.region_doc(project, region)

    def list_regions(self, project: str, query: Mapping[str, str]) -> Doc:
        items = [catalog.region_doc(project, region) for region in catalog.REGIONS]
        return page("compute#regionList", f"projects/{project}/regions", items, query)

    def list_machine_types(self, project: str, zone: str, query: Mapping[str, str]) -> Doc:
        items = [catalog.machine_type_doc(project, zone, name) for name in catalog.MACHINE_TYPES]
        return page("compute#machineTypeList", f"projects/{project}/zones/{zone}/machineTypes", items, query)

    def machine_type(self, project: str, zone: str, name: str) -> Doc:
        self.require_zone(project, zone)
        if name not in catalog.MACHINE_TYPES:
            raise not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")
        return catalog.machine_type_doc(project, zone, name)

    # Images.

    def get_image(self, project: str, name: str) -> Doc:
        with self._lock:
            doc = self._images.get((project, name))
            if doc is None:
                raise not_found(f"projects/{project}/global/images/{name}")
            return self._public(doc)

    def image_from_family(self, project: str, family: str) -> Doc:
        """GCE's rule: the newest image of the family that is ready and not deprecated."""
        with self._lock:
            candidates = [
                d
                for (p, _), d in self._images.items()
                if p == project
                and d.get("family") == family
                and d["status"] == "READY"
                and d.get("deprecated", {}).get("state", "ACTIVE") == "ACTIVE"
            ]
            if not candidates:
                raise not_found(f"projects/{project}/global/images/family/{family}")
            return self._public(max(candidates, key=lambda d: (d["creationTimestamp"], d["_order"])))

    def list_images(self, project: str, query: Mapping[str, str]) -> Doc:
        with self._lock:
            items = [self._public(d) for (p, _), d in self._images.items() if p == project]
        return page("compute#imageList", f"projects/{project}/global/images", items, query)

    def insert_image(self, project: str, body: Doc, user: str, query: Mapping[str, str]) -> Doc:
        name = check_name(body.get("name"))
        labels = check_labels(body.get("labels"))
        if body.get("family") is not None:
            check_name(body["family"], "resource.family")
        sources = [k for k in ("sourceDisk", "sourceImage", "sourceSnapshot", "rawDisk") if body.get(k)]
        if len(sources) != 1:
            raise invalid("Exactly one of sourceDisk, sourceImage, sourceSnapshot or rawDisk must be specified.")
        if sources[0] in ("sourceSnapshot", "rawDisk"):
            raise invalid_field(f"resource.{sources[0]}", body[sources[0]], "Not supported by this fake.")
        target = url(f"projects/{project}/global/images/{name}")
        with self._lock:
            if (project, name) in self._images:
                raise already_exists(f"projects/{project}/global/images/{name}")
            doc: Doc = {
                **{k: v for k, v in body.items() if not k.startswith("_")},
                "kind": "compute#image",
                "id": str(next(self._ids)),
                "creationTimestamp": now(),
                "name": name,
                "labels": labels,
                "labelFingerprint": fingerprint(labels),
                "sourceType": "RAW",
                "status": "PENDING",
                "selfLink": target,
                "_order": next(self._created),
            }
            machine: str | None = None  # to snapshot
            inherited: str | None = None  # the source image's machine image, shared
            if sources[0] == "sourceDisk":
                disk_key, disk = self._find_disk(body["sourceDisk"], project, "resource.sourceDisk")
                if disk.get("users"):
                    raise in_use(f"disk resource '{_path(disk['selfLink'])}'", _path(disk["users"][0]))
                machine = self._machines.get(disk_key)
                region = catalog.region_of(disk_key[1])
                doc |= {
                    "sourceDiskId": disk["id"],
                    "diskSizeGb": disk["sizeGb"],
                    "licenses": list(disk.get("licenses", [])),
                    "guestOsFeatures": copy.deepcopy(disk.get("guestOsFeatures", [])),
                    "storageLocations": body.get("storageLocations") or [catalog.storage_location(region)],
                }
            else:
                source_key, source = self._find_image(body["sourceImage"], project, "resource.sourceImage")
                inherited = self._machine_images.get(source_key)
                doc |= {
                    "sourceImage": source["selfLink"],
                    "sourceImageId": source["id"],
                    "diskSizeGb": source["diskSizeGb"],
                    "licenses": list(source.get("licenses", [])),
                    "guestOsFeatures": copy.deepcopy(source.get("guestOsFeatures", [])),
                    "storageLocations": body.get("storageLocations") or source.get("storageLocations", ["us"]),
                }
            doc["archiveSizeBytes"] = str(int(doc["diskSizeGb"]) * 2**28)
            quota = self._exceeds(project, "IMAGES", None, sum(1 for p, _ in self._images if p == project) + 1)
            if quota:
                return self._operation(project, "global", "insert", target, doc["id"], user, query, error=quota)
            self._images[project, name] = doc
            self._machine_images[project, name] = inherited
        if machine:
            try:
                snapshot = self.hypervisor.snapshot(machine)
            except HypervisorError as exc:
                with self._lock:
                    self._images.pop((project, name), None)
                    self._machine_images.pop((project, name), None)
                return self._operation(project, "global", "insert", target, doc["id"], user, query, failure=exc)
            with self._lock:
                self._machine_images[project, name] = snapshot
        with self._lock:
            doc["status"] = "READY"
        return self._operation(project, "global", "insert", target, doc["id"], user, query)

    def delete_image(self, project: str, name: str, user: str, query: Mapping[str, str]) -> Doc:
        with self._lock:
            doc = self._images.pop((project, name), None)
            if doc is None:
                raise not_found(f"projects/{project}/global/images/{name}")
            machine_image = self._machine_images.pop((project, name), None)
            shared = machine_image in self._machine_images.values()
        if machine_image is not None and not shared:
            self.hypervisor.delete_image(machine_image)
        return self._operation(project, "global", "delete", doc["selfLink"], doc["id"], user, query)

    def set_image_labels(self, project: str, name: str, body: Doc, user: str, query: Mapping[str, str]) -> Doc:
        with self._lock:
            doc = self._images.get((project, name))
            if doc is None:
                raise not_found(f"projects/{project}/global/images/{name}")
            self._set_labels(doc, body)
            return self._operation(project, "global", "setLabels", doc["selfLink"], doc["id"], user, query)

    def deprecate_image(self, project: str, name: str, body: Doc, user: str, query: Mapping[str, str]) -> Doc:
        state = body.get("state", "ACTIVE")
        if state not in _DEPRECATION_STATES:
            raise invalid_field("deprecationStatus.state", state, f"Must be one of {', '.join(_DEPRECATION_STATES)}.")
        with self._lock:
            doc = self._images.get((project, name))
            if doc is None:
                raise not_found(f"projects/{project}/global/images/{name}")
            if state == "ACTIVE":
                doc.pop("deprecated", None)
            else:
                status: Doc = {"state": state}
                if body.get("replacement"):
                    link = parse(str(body["replacement"]), project=project)
                    status["replacement"] = url(link.path())
                for when in ("deprecated", "obsolete", "deleted"):
                    if body.get(when):
                        status[when] = body[when]
                doc["deprecated"] = status
            return self._operation(project, "global", "deprecate", doc["selfLink"], doc["id"], user, query)

    # Instances.

    def get_instance(self, project: str, zone: str, name: str) -> Doc:
        with self._lock:
            return self._public(self._instance(project, zone, name))

    def list_instances(self, project: str, zone: str, query: Mapping[str, str]) -> Doc:
        with self._lock:
            items = [self._public(d) for (p, z, _), d in self._instances.items() if (p, z) == (project, zone)]
        return page("compute#instanceList", f"projects/{project}/zones/{zone}/instances", items, query)

    def aggregated(self, project: str, kind: str, query: Mapping[str, str]) -> Doc:
        """`aggregated/instances` or `aggregated/disks`: every zone's, filtered, in pages of
        `maxResults` resources across the zones (continued by `nextPageToken`, as every list)."""
        table = self._instances if kind == "instances" else self._disks
        predicate = _predicate(query)
        with self._lock:
            matching = [(z, self._public(d)) for (p, z, _), d in sorted(table.items()) if p == project and predicate(d)]
        start, size = _window(query)
        found: dict[str, list[Doc]] = {}
        for zone, doc in matching[start : start + size]:
            found.setdefault(f"zones/{zone}", []).append(doc)
        items: Doc = {
            f"zones/{zone}": {kind: found[f"zones/{zone}"]}
            if f"zones/{zone}" in found
            else {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope"}}
            for zone in catalog.zones()
        }
        singular = kind[:-1]
        result: Doc = {
            "kind": f"compute#{singular}AggregatedList",
            "id": f"projects/{project}/aggregated/{kind}",
            "items": items,
            "selfLink": url(f"projects/{project}/aggregated/{kind}"),
        }
        if start + size < len(matching):
            result["nextPageToken"] = _token(start + size)
        return result

    def insert_instance(self, project: str, zone: str, body: Doc, user: str, query: Mapping[str, str]) -> Doc:
        name = check_name(body.get("name"))
        labels = check_labels(body.get("labels"))
        key = (project, zone, name)
        target = url(f"projects/{project}/zones/{zone}/instances/{name}")
        machine_type = last(str(body.get("machineType") or ""))
        if not machine_type:
            raise required("resource.machineType")
        if machine_type not in catalog.MACHINE_TYPES:
            raise invalid_field(
                "resource.machineType",
                body["machineType"],
                f"Machine type with name '{machine_type}' does not exist in zone '{zone}'.",
            )
        interfaces = body.get("networkInterfaces") or []
        if not interfaces:
            raise required("resource.networkInterfaces")
        boot_disks = [d for d in body.get("disks") or [] if d and d.get("boot")]
        if len(boot_disks) != 1 or not boot_disks[0].get("initializeParams", {}).get("sourceImage"):
            raise invalid(
                "Invalid value for field 'resource.disks': one boot disk with initializeParams.sourceImage is "
                "required (attaching existing disks is not supported by this fake)."
            )
        params = boot_disks[0]["initializeParams"]
        items = [i for i in (body.get("metadata") or {}).get("items") or [] if i]
        for item in items:
            if item.get("key") == "startup-script-status" and item.get("value") == "notdone":
                item["value"] = "done"  # no guest runs Packer's wrapper, which would report it
        user_name, keys = ssh_keys(items)
        with self._lock:
            if key in self._instances:
                raise already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
            image_key, image = self._find_image(
                params["sourceImage"], project, "resource.disks[0].initializeParams.sourceImage"
            )
            disk_name = params.get("diskName") or name
            disk_key = (project, zone, disk_name)
            if disk_key in self._disks:
                raise already_exists(f"projects/{project}/zones/{zone}/disks/{disk_name}")
            size = str(params.get("diskSizeGb") or image["diskSizeGb"])
            if int(size) < int(image["diskSizeGb"]):
                raise invalid_field(
                    "resource.disks[0].initializeParams.diskSizeGb",
                    size,
                    f"Requested disk size cannot be smaller than the image size ({image['diskSizeGb']} GB).",
                )
            cpus = catalog.MACHINE_TYPES[machine_type][0]
            quota = self._exceeds(project, "CPUS", zone, self._region_usage(project, zone, cpus=True) + cpus)
            quota = quota or self._exceeds(
                project, "INSTANCES", zone, self._region_usage(project, zone, cpus=False) + 1
            )
            instance_id = str(next(self._ids))
            if quota:
                return self._operation(
                    project, f"zones/{zone}", "insert", target, instance_id, user, query, error=quota
                )
            disk = self._new_disk(project, zone, disk_name, size, params, image, target)
            auto_delete = bool(boot_disks[0].get("autoDelete", False))
            doc: Doc = {
                **{k: v for k, v in body.items() if not k.startswith("_")},
                "kind": "compute#instance",
                "id": instance_id,
                "creationTimestamp": now(),
                "name": name,
                "zone": url(f"projects/{project}/zones/{zone}"),
                "machineType": url(f"projects/{project}/zones/{zone}/machineTypes/{machine_type}"),
                "status": "PROVISIONING",
                "labels": labels,
                "labelFingerprint": fingerprint(labels),
                "metadata": {"kind": "compute#metadata", "items": items, "fingerprint": fingerprint(items)},
                "disks": [
                    {
                        "kind": "compute#attachedDisk",
                        "type": "PERSISTENT",
                        "mode": "READ_WRITE",
                        "source": disk["selfLink"],
                        "deviceName": boot_disks[0].get("deviceName") or disk_name,
                        "index": 0,
                        "boot": True,
                        "autoDelete": auto_delete,
                        "interface": "SCSI",
                        "diskSizeGb": size,
                        "licenses": disk["licenses"],
                        "guestOsFeatures": disk["guestOsFeatures"],
                    }
                ],
                "networkInterfaces": [],
                "cpuPlatform": "Intel Broadwell",
                "fingerprint": fingerprint([name, instance_id]),
                "selfLink": target,
            }
            self._instances[key] = doc
            self._disks[disk_key] = disk
            machine = f"gce-{project}-{zone}-{name}"
            self._machines[disk_key] = machine
            base = self._machine_images.get(image_key)
        address = ""
        try:
            address = self.hypervisor.allocate()
            self.hypervisor.boot(
                Boot(
                    name=machine,
                    address=address,
                    image=base,
                    user=user_name,
                    public_keys=keys,
                    hostname=name,
                )
            )
        except HypervisorError as exc:
            if address:
                self.hypervisor.release(address)
            with self._lock:
                self._instances.pop(key, None)
                self._disks.pop(disk_key, None)
                self._machines.pop(disk_key, None)
            return self._operation(project, f"zones/{zone}", "insert", target, instance_id, user, query, failure=exc)
        with self._lock:
            self._addresses[key] = address
            doc["networkInterfaces"] = [
                _interface(project, zone, i, interface, address) for i, interface in enumerate(interfaces)
            ]
            doc["status"] = "RUNNING"
            doc["lastStartTimestamp"] = now()
        return self._operation(project, f"zones/{zone}", "insert", target, instance_id, user, query)

    def delete_instance(self, project: str, zone: str, name: str, user: str, query: Mapping[str, str]) -> Doc:
        key = (project, zone, name)
        with self._lock:
            doc = self._instance(project, zone, name)
            del self._instances[key]
            address = self._addresses.pop(key, None)
            boot_machine: str | None = None
            boot_survives = True
            for attached in doc["disks"]:
                link = parse(attached["source"], project=project)
                disk_key = (link.project, link.parts[1], link.name)
                disk = self._disks.get(disk_key)
                if disk is None:
                    continue
                disk["users"] = [u for u in disk.get("users", []) if u != doc["selfLink"]]
                if attached.get("boot"):
                    boot_machine = self._machines.get(disk_key)
                    boot_survives = not attached.get("autoDelete")
                if attached.get("autoDelete"):
                    del self._disks[disk_key]
                    self._machines.pop(disk_key, None)
        if boot_machine is not None:
            if boot_survives:
                self.hypervisor.power_off(boot_machine)
            else:
                self.hypervisor.remove(boot_machine)
        if address:
            self.hypervisor.release(address)
        return self._operation(project, f"zones/{zone}", "delete", doc["selfLink"], doc["id"], user, query)

    def serial_port(self, project: str, zone: str, name: str) -> Doc:
        with self._lock:
            doc = self._instance(project, zone, name)
        contents = f"{name} login: (serial console of the fake instance {doc['selfLink']})\n"
        return {
            "kind": "compute#serialPortOutput",
            "contents": contents,
            "start": "0",
            "next": str(len(contents)),
            "selfLink": doc["selfLink"] + "/serialPort",
        }

    def set_instance_metadata(
        self, project: str, zone: str, name: str, body: Doc, user: str, query: Mapping[str, str]
    ) -> Doc:
        with self._lock:
            doc = self._instance(project, zone, name)
            if body.get("fingerprint") != doc["metadata"]["fingerprint"]:
                raise ApiError(
                    412, "conditionNotMet", "Supplied fingerprint does not match current metadata fingerprint."
                )
            items = [i for i in body.get("items") or [] if i]
            doc["metadata"] = {"kind": "compute#metadata", "items": items, "fingerprint": fingerprint(items)}
            return self._operation(project, f"zones/{zone}", "setMetadata", doc["selfLink"], doc["id"], user, query)

    def set_instance_labels(
        self, project: str, zone: str, name: str, body: Doc, user: str, query: Mapping[str, str]
    ) -> Doc:
        with self._lock:
            doc = self._instance(project, zone, name)
            self._set_labels(doc, body)
            return self._operation(project, f"zones/{zone}", "setLabels", doc["selfLink"], doc["id"], user, query)

    # Disks.

    def get_disk(self, project: str, zone: str, name: str) -> Doc:
        with self._lock:
            return self._public(self._disk(project, zone, name))

    def list_disks(self, project: str, zone: str, query: Mapping[str, str]) -> Doc:
        with self._lock:
            items = [self._public(d) for (p, z, _), d in self._disks.items() if (p, z) == (project, zone)]
        return page("compute#diskList", f"projects/{project}/zones/{zone}/disks", items, query)

    def delete_disk(self, project: str, zone: str, name: str, user: str, query: Mapping[str, str]) -> Doc:
        key = (project, zone, name)
        with self._lock:
            doc = self._disk(project, zone, name)
            if doc.get("users"):
                raise in_use(f"disk resource '{_path(doc['selfLink'])}'", _path(doc["users"][0]))
            del self._disks[key]
            machine = self._machines.pop(key, None)
        if machine is not None:
            self.hypervisor.remove(machine)
        return self._operation(project, f"zones/{zone}", "delete", doc["selfLink"], doc["id"], user, query)

    # Operations.

    def get_operation(self, project: str, scope: str, name: str) -> Doc:
        with self._lock:
            doc = self._operations.get((project, scope, name))
            if doc is None:
                raise not_found(f"projects/{project}/{scope}/operations/{name}")
            return copy.deepcopy(doc)

    # Internals (called with the lock held where they touch the tables).

    def _instance(self, project: str, zone: str, name: str) -> Doc:
        doc = self._instances.get((project, zone, name))
        if doc is None:
            raise not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return doc

    def _disk(self, project: str, zone: str, name: str) -> Doc:
        doc = self._disks.get((project, zone, name))
        if doc is None:
            raise not_found(f"projects/{project}/zones/{zone}/disks/{name}")
        return doc

    def _find_disk(self, link: str, project: str, field: str) -> tuple[tuple[str, str, str], Doc]:
        parsed = parse(link, project=project)
        if len(parsed.parts) != 4 or parsed.parts[0] != "zones" or parsed.parts[2] != "disks":
            raise invalid_field(field, link, "The URL is malformed.")
        key = (parsed.project, parsed.parts[1], parsed.name)
        doc = self._disks.get(key)
        if doc is None:
            raise not_found(parsed.path())
        return key, doc

    def _find_image(self, link: str, project: str, field: str) -> tuple[tuple[str, str], Doc]:
        """An image named by link, or the one its family points at; OBSOLETE and DELETED images
        cannot be used, as on GCE."""
        parsed: Link = parse(link, project=project)
        parts = parsed.parts
        if parts[:2] != ("global", "images") or len(parts) not in (3, 4) or (len(parts) == 4 and parts[2] != "family"):
            raise invalid_field(field, link, "The URL is malformed.")
        if len(parts) == 4:
            try:
                found = self.image_from_family(parsed.project, parts[3])
            except ApiError as exc:
                raise invalid_field(field, link, "The referenced image resource cannot be found.") from exc
            key = (parsed.project, found["name"])
        else:
            key = (parsed.project, parts[2])
        doc = self._images.get(key)
        if doc is None:
            raise invalid_field(field, link, "The referenced image resource cannot be found.")
        state = doc.get("deprecated", {}).get("state")
        if state in ("OBSOLETE", "DELETED"):
            raise invalid_field(field, link, f"The referenced image resource is {state.lower()}.")
        return key, doc

    def _new_disk(self, project: str, zone: str, name: str, size: str, params: Doc, image: Doc, user: str) -> Doc:
        disk_type = last(str(params.get("diskType") or "pd-standard"))
        labels = check_labels(params.get("labels"), "resource.disks[0].initializeParams.labels")
        return {
            "kind": "compute#disk",
            "id": str(next(self._ids)),
            "creationTimestamp": now(),
            "name": name,
            "sizeGb": size,
            "zone": url(f"projects/{project}/zones/{zone}"),
            "status": "READY",
            "sourceImage": image["selfLink"],
            "sourceImageId": image["id"],
            "type": url(f"projects/{project}/zones/{zone}/diskTypes/{disk_type}"),
            "labels": labels,
            "labelFingerprint": fingerprint(labels),
            "licenses": list(image.get("licenses", [])),
            "guestOsFeatures": copy.deepcopy(image.get("guestOsFeatures", [])),
            "users": [user],
            "physicalBlockSizeBytes": "4096",
            "selfLink": url(f"projects/{project}/zones/{zone}/disks/{name}"),
        }

    def _set_labels(self, doc: Doc, body: Doc) -> None:
        if body.get("labelFingerprint") != doc["labelFingerprint"]:
            raise stale_fingerprint("Labels fingerprint either invalid or resource labels have changed")
        labels = check_labels(body.get("labels"))
        doc["labels"] = labels
        doc["labelFingerprint"] = fingerprint(labels)

    def _region_usage(self, project: str, zone: str, *, cpus: bool) -> int:
        region = catalog.region_of(zone)
        total = 0
        for (p, z, _), doc in self._instances.items():
            if p == project and catalog.region_of(z) == region:
                total += catalog.MACHINE_TYPES[last(doc["machineType"])][0] if cpus else 1
        return total

    def _exceeds(self, project: str, metric: str, zone: str | None, wanted: int) -> Doc | None:
        quota = self._quotas.get((project, metric))
        if quota is None or wanted <= quota.limit:
            return None
        where = f"in region {catalog.region_of(zone)}" if zone else "globally"
        return {"code": "QUOTA_EXCEEDED", "message": f"Quota '{metric}' exceeded.  Limit: {quota.limit:.1f} {where}."}

    def _operation(
        self,
        project: str,
        scope: str,
        kind: str,
        target: str,
        target_id: str,
        user: str,
        query: Mapping[str, str],
        *,
        error: Doc | None = None,
        failure: HypervisorError | None = None,
    ) -> Doc:
        """A finished operation (failed with `error`, or with the Hypervisor's `failure`)."""
        with self._lock:
            request_id = query.get("requestId")
            if request_id and request_id in self._requests:
                return copy.deepcopy(self._requests[request_id])
            number = next(self._ids)
            name = f"operation-{number}-{hashlib.sha1(str(number).encode()).hexdigest()[:8]}"
            stamp = now()
            doc: Doc = {
                "kind": "compute#operation",
                "id": str(number),
                "name": name,
                "operationType": kind,
                "targetLink": target,
                "targetId": target_id,
                "status": "DONE",
                "progress": 100,
                "user": user,
                "insertTime": stamp,
                "startTime": stamp,
                "endTime": stamp,
                "selfLink": url(f"projects/{project}/{scope}/operations/{name}"),
            }
            if scope.startswith("zones/"):
                doc["zone"] = url(f"projects/{project}/{scope}")
            elif scope.startswith("regions/"):
                doc["region"] = url(f"projects/{project}/{scope}")
            if failure is not None:
                error = {"code": "RESOURCE_OPERATION_FAILED", "message": str(failure)}
                doc |= {"httpErrorStatusCode": 500, "httpErrorMessage": "INTERNAL SERVER ERROR"}
            elif error is not None:
                doc |= {"httpErrorStatusCode": 403, "httpErrorMessage": "FORBIDDEN"}
            if error is not None:
                doc["error"] = {"errors": [error]}
            self._operations[project, scope, name] = doc
            if request_id:
                self._requests[request_id] = doc
            return copy.deepcopy(doc)

    @staticmethod
    def _public(doc: Doc) -> Doc:
        return {k: copy.deepcopy(v) for k, v in doc.items() if not k.startswith("_")}


def _path(link: str) -> str:
    return parse(link, project="").path()


def _interface(project: str, zone: str, index: int, requested: Doc, address: str) -> Doc:
    """A network interface as GCE fills it in: the machine's address inside, and (when the
    request asked for an access config) the same address as the "external" NAT one, since the
    lab has no NAT and Packer connects to `natIP`."""
    region = catalog.region_of(zone)
    network = parse(str(requested.get("network") or "global/networks/default"), project=project)
    subnetwork = parse(
        str(requested.get("subnetwork") or f"regions/{region}/subnetworks/{network.name}"), project=project
    )
    interface: Doc = {
        "kind": "compute#networkInterface",
        "name": f"nic{index}",
        "network": url(network.path()),
        "subnetwork": url(subnetwork.path()),
        "networkIP": address,
        "stackType": "IPV4_ONLY",
        "fingerprint": fingerprint([address, index]),
    }
    configs = requested.get("accessConfigs") or []
    if configs:
        interface["accessConfigs"] = [
            {
                "kind": "compute#accessConfig",
                "type": config.get("type", "ONE_TO_ONE_NAT"),
                "name": config.get("name", "External NAT"),
                "natIP": address,
                "networkTier": config.get("networkTier", "PREMIUM"),
            }
            for config in configs
        ]
    return interface


def _predicate(query: Mapping[str, str]) -> Callable[[Doc], bool]:
    try:
        return filters.parse(query.get("filter", ""))
    except filters.FilterError as exc:
        raise invalid_field("filter", query.get("filter", ""), f"Invalid list filter expression: {exc}.") from exc


def page(kind: str, path: str, items: list[Doc], query: Mapping[str, str]) -> Doc:
    """One page of a list: filtered, ordered (`name` or `creationTimestamp desc`), `maxResults`
    long, continued by `nextPageToken`."""
    predicate = _predicate(query)
    order = query.get("orderBy", "")
    if order in ("", "name"):
        items = sorted(items, key=lambda d: d["name"])
    elif order == "creationTimestamp desc":
        items = sorted(items, key=lambda d: (d["creationTimestamp"], d["name"]), reverse=True)
    else:
        raise invalid_field("orderBy", order, "Only 'name' and 'creationTimestamp desc' are supported.")
    items = [d for d in items if predicate(d)]
    start, size = _window(query)
    result: Doc = {"kind": kind, "id": path, "selfLink": url(path)}
    chunk = items[start : start + size]
    if chunk:
        result["items"] = chunk
    if start + size < len(items):
        result["nextPageToken"] = _token(start + size)
    return result


def _window(query: Mapping[str, str]) -> tuple[int, int]:
    """(first item, page size) of a list request: `pageToken` and `maxResults` (0 or unset: 500)."""
    try:
        size = int(query.get("maxResults") or _MAX_RESULTS)
    except ValueError as exc:
        raise invalid_field("maxResults", query.get("maxResults", ""), "Must be a number.") from exc
    try:
        start = int(base64.urlsafe_b64decode(query["pageToken"]).decode()) if query.get("pageToken") else 0
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_field("pageToken", query.get("pageToken", ""), "Invalid page token.") from exc
    if not 0 <= size <= _MAX_RESULTS:
        raise invalid_field("maxResults", size, f"Must be between 0 and {_MAX_RESULTS}.")
    return start, size or _MAX_RESULTS


def _token(start: int) -> str:
    return base64.urlsafe_b64encode(str(start).encode()).decode()
