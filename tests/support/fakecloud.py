"""A fake cloud for handler tests: a `CloudApi` that records every call and answers as a test
configures it, and the operator's real `CloudAccess` handing it out.

The real `CloudAccess` is kept so that credentials behave as in the operator: a recipe's
credentials Secret is read through the (fake) Kubernetes client, a missing one is a
CredentialsUnavailableError, never the operator's own identity; `FakeAdapters` records which
identity (the Secret's keys, or none) each adapter was asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from goldenimage.api.errors import ForeignArtifactError
from goldenimage.api.goldenimage import Target, Validation
from goldenimage.api.types import CloudName
from goldenimage.clouds.adapters import Adapters
from goldenimage.clouds.base import CloudApi, CloudResource, Instance, Pointer, PublishScope
from goldenimage.config import Config
from goldenimage.kube.client import Kube
from goldenimage.kube.credentials import CloudAccess


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]


@dataclass
class FakeCloud:
    """Answers: `sources` (target name -> the image a selector resolves to; absent: None, the
    source as written), `source_errors` (target name -> raised), `missing` (recorded artifacts
    gone), `artifacts` (images carrying a build id, for find_artifacts), `foreign` (artifact
    ids without the build's tag), `leftovers_found` (what a sweep deletes), `publish_changes` or
    `publish_error`. Any method named in `errors` raises that error instead; one named in
    `hooks` calls its hook first (to look at the cluster at that moment, say)."""

    name: CloudName = "aws"
    sources: dict[str, str] = field(default_factory=dict)
    source_errors: dict[str, Exception] = field(default_factory=dict)
    missing: set[tuple[str, str]] = field(default_factory=set)
    artifacts: list[CloudResource] = field(default_factory=list)
    foreign: set[str] = field(default_factory=set)
    leftovers_found: list[CloudResource] = field(default_factory=list)
    publish_changes: list[str] = field(default_factory=lambda: ["wrote the pointer"])
    publish_error: Exception | None = None
    deprecation_note: str | None = None
    errors: dict[str, Exception] = field(default_factory=dict)
    hooks: dict[str, Callable[[], None]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _record(self, method: str, *args: Any) -> None:
        # Adapters run in worker threads.
        with self._lock:
            self.calls.append(Call(method, args))
        if method in self.hooks:
            self.hooks[method]()
        if method in self.errors:
            raise self.errors[method]

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [c.args for c in self.calls if c.method == method]

    # -- sources and artifacts -------------------------------------------------------------

    def resolve_source(self, target: Target) -> str | None:
        self._record("resolve_source", target.name)
        if target.name in self.source_errors:
            raise self.source_errors[target.name]
        return self.sources.get(target.name)

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[CloudResource]:
        self._record("find_artifacts", build_id, tuple(regions))
        return [r for r in self.artifacts if r.region in regions]

    def delete_artifact(self, region: str, artifact_id: str, build_id: str) -> list[CloudResource]:
        self._record("delete_artifact", region, artifact_id, build_id)
        if artifact_id in self.foreign:
            raise ForeignArtifactError(f"{artifact_id} in {region} does not carry build id {build_id}")
        self.artifacts = [r for r in self.artifacts if (r.region, r.id) != (region, artifact_id)]
        return [CloudResource("image", region, artifact_id)]

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        self._record("missing_artifacts", tuple(artifacts))
        return {a for a in artifacts if a in self.missing}

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        self._record("deprecate", region, artifact_id, reason)
        return self.deprecation_note

    # -- leftovers -------------------------------------------------------------------------

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        self._record("leftovers", build_id, tuple(regions), target, attempt)
        return [r for r in self.leftovers_found if r.region in regions]

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        self._record("sweep", build_id, tuple(regions), target, attempt)
        swept = [r for r in self.leftovers_found if r.region in regions]
        self.leftovers_found = [r for r in self.leftovers_found if r not in swept]
        return swept

    # -- validation (the runner's, not the handlers') -----------------------------------------

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        self._record("launch", target.name, region, image)
        return Instance(id=f"i-{image}", region=region)

    def ready(self, instance: Instance) -> Instance | None:
        self._record("ready", instance.id)
        return Instance(id=instance.id, region=instance.region, address="127.0.0.1")

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        self._record("run_command", instance.id, command)
        return 0, ""

    def terminate(self, instance: Instance) -> None:
        self._record("terminate", instance.id)

    # -- publication -----------------------------------------------------------------------

    def publish(
        self, scope: PublishScope, section: BaseModel, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        self._record("publish", scope, section, tuple(current), tuple(previous))
        if self.publish_error is not None:
            raise self.publish_error
        return list(self.publish_changes)

    # -- inside the build Job --------------------------------------------------------------

    def build_watcher(self, target: Target, build_id: str, attempt: str) -> Callable[[str], None] | None:
        self._record("build_watcher", target.name, build_id, attempt)
        return None

    def after_build(self, target: Target, artifacts: Sequence[tuple[str, str]]) -> list[str]:
        self._record("after_build", target.name, tuple(artifacts))
        return []


class FakeAdapters(Adapters):
    """The adapters by cloud, whatever the credentials; which were asked for is recorded."""

    def __init__(self, clouds: Mapping[CloudName, CloudApi]) -> None:
        super().__init__(Config())
        self.clouds = dict(clouds)
        self.asked: list[tuple[CloudName, dict[str, str]]] = []

    def get(self, cloud: CloudName, credentials: Mapping[str, str] | None = None) -> CloudApi | None:
        self.asked.append((cloud, dict(credentials or {})))
        return self.clouds.get(cloud)


class FakeCloudAccess(CloudAccess):
    def __init__(self, kube: Kube, clouds: Mapping[CloudName, CloudApi]) -> None:
        self.fakes = FakeAdapters(clouds)
        super().__init__(kube, self.fakes)

    @property
    def asked(self) -> list[tuple[CloudName, dict[str, str]]]:
        """(cloud, credentials) of every adapter handed out, in order."""
        return self.fakes.asked
