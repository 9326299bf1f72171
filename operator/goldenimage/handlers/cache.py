"""What the watches delivered, indexed the way the reconciles look things up: builds and
channels by image, the versions an image declares revoked, Jobs and Pods by build. Reconciles
read related objects here instead of listing them from the API server; kopf starts no handler
before its indexes are filled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

Body = Mapping[str, Any]


class Cache(Protocol):
    def builds(self, namespace: str, image: str) -> list[Body]:
        """The ImageBuilds of an image."""

    def channels(self, namespace: str) -> list[Body]:
        """The ImageChannels of a namespace."""

    def revocations(self, namespace: str, image: str) -> dict[int, str]:
        """The versions a GoldenImage declares revoked, with their reasons."""

    def image_exists(self, namespace: str, image: str) -> bool:
        """Whether the GoldenImage exists."""

    def jobs(self, namespace: str, build: str) -> list[Body]:
        """The Jobs of a build."""

    def pods(self, namespace: str, build: str) -> list[Body]:
        """The Pods of a build's Jobs."""


# What the cache reads from: a kopf.Index (key -> values), or a dict of lists in tests.
Store = Mapping[Any, Iterable[Any]]


class IndexedCache:
    def __init__(self, builds: Store, channels: Store, jobs: Store, pods: Store, images: Store) -> None:
        self._builds = builds
        self._channels = channels
        self._jobs = jobs
        self._pods = pods
        self._images = images  # every image, with the versions it declares revoked

    def builds(self, namespace: str, image: str) -> list[Body]:
        return list(self._builds.get((namespace, image)) or ())

    def channels(self, namespace: str) -> list[Body]:
        return list(self._channels.get(namespace) or ())

    def revocations(self, namespace: str, image: str) -> dict[int, str]:
        out: dict[int, str] = {}
        for declared in self._images.get((namespace, image)) or ():
            out.update(declared)
        return out

    def image_exists(self, namespace: str, image: str) -> bool:
        return (namespace, image) in self._images

    def jobs(self, namespace: str, build: str) -> list[Body]:
        return list(self._jobs.get((namespace, build)) or ())

    def pods(self, namespace: str, build: str) -> list[Body]:
        return list(self._pods.get((namespace, build)) or ())
