"""What every project sees alike: regions, their zones, and machine types."""

from __future__ import annotations

from typing import Any

from .links import url

REGIONS: dict[str, tuple[str, ...]] = {
    "us-central1": ("a", "b", "c", "f"),
    "us-east1": ("b", "c", "d"),
    "us-west1": ("a", "b", "c"),
    "europe-west1": ("b", "c", "d"),
    "europe-west3": ("a", "b", "c"),
    "europe-west4": ("a", "b", "c"),
    "asia-east1": ("a", "b", "c"),
}

# name: (guest CPUs, memory in MB)
MACHINE_TYPES: dict[str, tuple[int, int]] = {
    "e2-micro": (2, 1024),
    "e2-small": (2, 2048),
    "e2-medium": (2, 4096),
    "e2-standard-2": (2, 8192),
    "e2-standard-4": (4, 16384),
    "n1-standard-1": (1, 3840),
    "n1-standard-2": (2, 7680),
    "n2-standard-2": (2, 8192),
    "n2-standard-4": (4, 16384),
}

_NUMBERS = {region: 1000 + i for i, region in enumerate(REGIONS)}  # stable ids


def zones() -> list[str]:
    return [f"{region}-{suffix}" for region, suffixes in REGIONS.items() for suffix in suffixes]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def storage_location(region: str) -> str:
    """The multi-region an image is stored in by default: the continent of its source."""
    continent = region.split("-", 1)[0]
    return {"europe": "eu", "asia": "asia"}.get(continent, "us")


def zone_doc(project: str, zone: str) -> dict[str, Any]:
    region = region_of(zone)
    return {
        "kind": "compute#zone",
        "id": str(2000 + zones().index(zone)),
        "name": zone,
        "description": zone,
        "status": "UP",
        "region": url(f"projects/{project}/regions/{region}"),
        "selfLink": url(f"projects/{project}/zones/{zone}"),
        "availableCpuPlatforms": ["Intel Broadwell", "AMD Milan"],
        "supportsPzs": False,
    }


def region_doc(project: str, region: str) -> dict[str, Any]:
    return {
        "kind": "compute#region",
        "id": str(_NUMBERS[region]),
        "name": region,
        "description": region,
        "status": "UP",
        "zones": [url(f"projects/{project}/zones/{region}-{s}") for s in REGIONS[region]],
        "quotas": [],
        "selfLink": url(f"projects/{project}/regions/{region}"),
        "supportsPzs": False,
    }


def machine_type_doc(project: str, zone: str, name: str) -> dict[str, Any]:
    cpus, memory = MACHINE_TYPES[name]
    return {
        "kind": "compute#machineType",
        "id": str(3000 + sorted(MACHINE_TYPES).index(name)),
        "name": name,
        "description": f"{cpus} vCPU, {memory / 1024:g} GB RAM",
        "guestCpus": cpus,
        "memoryMb": memory,
        "maximumPersistentDisks": 128,
        "maximumPersistentDisksSizeGb": "263168",
        "zone": zone,
        "isSharedCpu": False,
        "selfLink": url(f"projects/{project}/zones/{zone}/machineTypes/{name}"),
    }
