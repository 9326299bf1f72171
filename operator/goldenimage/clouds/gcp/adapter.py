"""The GCP adapter (google-cloud-compute): resolve source families, find, check, deprecate and
delete the images builds made, sweep what failed attempts and validations left, run validation
instances (commands over SSH, with a key made for each run), and publish channels.

Artifacts are recorded as image paths (`projects/P/global/images/N`), so every call on one
knows its project. Sweeps and `find_artifacts` are handed only a build id and regions: they
search every project this adapter has met (in targets, sources and artifact paths) and the
credentials' own project.

Revocation sets the revoked label and the image's deprecation state DEPRECATED, as AWS's image
deprecation does: the image drops out of family resolution and source selection, but instances,
instance templates and managed instance groups that still name it keep launching (OBSOLETE
would break their scale-out until they move, which the channels, not the revocation, decide).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence

from google.cloud import compute_v1
from pydantic import BaseModel

from ...api import labels
from ...api.errors import CloudError, CloudRefusedError, ForeignArtifactError, SourceNotFoundError
from ...api.goldenimage import Target, Validation
from ...api.imagechannel import GcpPublish
from ...api.names import fit
from ...api.types import CloudName
from .. import ssh
from ..base import CloudResource, Instance, Pointer, PublishScope
from .compute import CALL_TIMEOUT, Compute, created, deprecation, label_filter
from .kind import KIND, image_path, label_value, parse_image, region_of, settings
from .publish import Publisher

BUILD_KEY = KIND.tag_key(labels.BUILD_ID)
TARGET_KEY = KIND.tag_key(labels.TARGET)
ATTEMPT_KEY = KIND.tag_key(labels.ATTEMPT)
REVOKED_KEY = KIND.tag_key(labels.REVOKED)

_ZONED = re.compile(r"^projects/([^/]+)/zones/([^/]+)/(instances|disks)/([^/]+)$")
# Usable for new disks and instances; the rest are gone or going.
_UNUSABLE_STATUS = {"FAILED", "DELETING"}
_UNUSABLE_STATE = {"OBSOLETE", "DELETED"}


def zoned_path(project: str, zone: str, kind: str, name: str) -> str:
    return f"projects/{project}/zones/{zone}/{kind}/{name}"


def parse_zoned(ref: str) -> tuple[str, str, str]:
    """(project, zone, name) of an instance or disk path."""
    match = _ZONED.match(ref)
    if match is None:
        raise CloudRefusedError(f"{ref!r} is not a GCE instance or disk path")
    return match.group(1), match.group(2), match.group(4)


def builder_name_pattern(build_id: str, target: str | None, attempt: int | None) -> str:
    """A regular expression for the names Packer gives its instance and disk (the renderer's
    temporary name: `packer-<build id>-<target>` fitted to 56 characters, then `-a<attempt>`);
    Packer 1.6.6 labels the instance but not its disk."""
    if target is None:
        return f"packer-{build_id}-.+-a[0-9]+"
    base = fit(f"packer-{build_id}-{target}", 56)
    return f"{base}-a{attempt if attempt is not None else '[0-9]+'}"


def _network(value: str | None) -> str | None:
    if value is None or "/" in value:
        return value
    return f"global/networks/{value}"


def _subnetwork(value: str | None, zone: str) -> str | None:
    if value is None or "/" in value:
        return value
    return f"regions/{region_of(zone)}/subnetworks/{value}"


class GcpApi:
    name: CloudName = "gcp"
    kind = KIND

    def __init__(self, *, credentials: Mapping[str, str] | None = None) -> None:
        self.compute = Compute(credentials)
        self._projects: set[str] = set()
        self._zones: set[tuple[str, str]] = set()  # (project, zone) known to exist
        self._keys: dict[str, tuple[ssh.KeyPair, str]] = {}  # instance path: its key and login user
        self._lock = threading.Lock()
        self._publisher = Publisher(self.compute, self._learn)

    # -- projects --------------------------------------------------------------------------

    def _learn(self, project: str) -> None:
        with self._lock:
            self._projects.add(project)

    def projects(self) -> list[str]:
        """Where sweeps and searches look: every project met so far and the credentials' own."""
        with self._lock:
            known = set(self._projects)
        default = self.compute.default_project()
        if default:
            known.add(default)
        if not known:
            raise CloudError("no GCP project to search yet: the credentials name none and no target was seen")
        return sorted(known)

    def _image(self, ref: str) -> tuple[str, str]:
        project, name = parse_image(ref)
        if project is None:
            project = self.compute.default_project()
            if project is None:
                raise CloudRefusedError(f"image {ref!r} names no project and the credentials have none")
        self._learn(project)
        return project, name

    # -- sources ---------------------------------------------------------------------------

    def _check_zone(self, project: str, zone: str) -> None:
        """A target's zone must exist before a build is started in it: Packer would only fail
        there, attempt after attempt, with a less specific message."""
        with self._lock:
            if (project, zone) in self._zones:
                return
        if not self.compute.zone_exists(project, zone):
            raise CloudRefusedError(
                f"zone {zone} does not exist in project {project} (or the project does not): "
                "gcp.zone must name a Compute Engine zone the project can use"
            )
        with self._lock:
            self._zones.add((project, zone))

    def resolve_source(self, target: Target) -> str | None:
        gcp = settings(target)
        self._learn(gcp.project)
        self._check_zone(gcp.project, gcp.zone)
        family = gcp.source.family
        if family is None:
            return None  # an explicit image is used as written; Packer reports if it is missing
        project = gcp.source.project or gcp.project
        images = self.compute.images_client
        newest = self.compute.call(
            f"resolving image family {family} in {project}",
            lambda: images.get_from_family(project=project, family=family, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )
        if newest is not None and REVOKED_KEY not in newest.labels and newest.status == "READY":
            return str(newest.name)
        # The family's choice is revoked, or it has none (or the project does not exist: then
        # this list is refused): pick among its members as GCE would, skipping revoked ones.
        members = self.compute.images(project, f'family = "{family}"')
        usable = [
            i
            for i in members
            if i.status == "READY" and deprecation(i) == "ACTIVE" and REVOKED_KEY not in i.labels and i.family == family
        ]
        if not usable:
            why = f" ({len(members)} members, all deprecated, obsolete, revoked or not ready)" if members else ""
            raise SourceNotFoundError(f"image family {family} in project {project} has no usable image{why}")
        return str(max(usable, key=lambda i: (created(i), i.name)).name)

    # -- artifacts -------------------------------------------------------------------------

    @staticmethod
    def _region(image: compute_v1.Image, regions: Sequence[str]) -> str:
        stored = list(image.storage_locations)
        if stored and stored[0] in regions:
            return stored[0]
        return regions[0] if regions else (stored[0] if stored else "global")

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[CloudResource]:
        wanted = label_filter({BUILD_KEY: label_value(build_id)})
        return [
            CloudResource("image", self._region(image, regions), image_path(project, image.name))
            for project in self.projects()
            for image in self.compute.images(project, wanted)
        ]

    def delete_artifact(self, region: str, artifact_id: str, build_id: str) -> list[CloudResource]:
        project, name = self._image(artifact_id)
        image = self.compute.image(project, name)
        if image is None:
            return []
        if image.labels.get(BUILD_KEY) != label_value(build_id):
            # Only what this build made: status is no licence to delete anyone's image.
            raise ForeignArtifactError(f"{artifact_id} does not carry {labels.BUILD_ID}={build_id}")
        self.compute.delete_image(project, name)
        return [CloudResource("image", region, image_path(project, name))]

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        missing: set[tuple[str, str]] = set()
        for region, ident in artifacts:
            project, name = self._image(ident)
            image = self.compute.image(project, name)
            if image is None or image.status in _UNUSABLE_STATUS or deprecation(image) in _UNUSABLE_STATE:
                missing.add((region, ident))
        return missing

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        project, name = self._image(artifact_id)

        def revoked(current: dict[str, str]) -> dict[str, str]:
            return {**current, REVOKED_KEY: label_value(reason)}

        self.compute.relabel(project, name, revoked)
        image = self.compute.image(project, name)
        if image is not None and deprecation(image) == "ACTIVE":
            self.compute.set_deprecation(project, name, "DEPRECATED")
        return None

    # -- leftovers -------------------------------------------------------------------------

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        wanted = {BUILD_KEY: label_value(build_id)}
        if target is not None:
            wanted[TARGET_KEY] = label_value(target)
            if attempt is not None:
                wanted[ATTEMPT_KEY] = str(attempt)
        labelled = label_filter(wanted)
        named = "name eq " + builder_name_pattern(build_id, target, attempt if target is not None else None)
        out: list[CloudResource] = []
        for project in self.projects():
            for zone, instance in self.compute.aggregated("instances", project, labelled):
                out.append(CloudResource("instance", zone, zoned_path(project, zone, "instances", instance.name)))
            disks = {(zone, d.name) for zone, d in self.compute.aggregated("disks", project, labelled)}
            disks |= {(zone, d.name) for zone, d in self.compute.aggregated("disks", project, named)}
            out += [CloudResource("disk", z, zoned_path(project, z, "disks", n)) for z, n in sorted(disks)]
            if target is not None and attempt is not None:
                # Images of an attempt that failed were never recorded: they would only leak.
                for image in self.compute.images(project, labelled):
                    region = self._region(image, regions)
                    out.append(CloudResource("image", region, image_path(project, image.name)))
        return out

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        found = self.leftovers(build_id, regions, target, attempt)
        # Instances first: they hold their disks. A disk deleted with its instance counts as swept.
        order = {"instance": 0, "disk": 1, "image": 2}
        deleted: list[CloudResource] = []
        failures: list[str] = []
        refused = False
        for resource in sorted(found, key=lambda r: (order[r.kind], r.id)):
            # Each resource on its own: one that cannot go now does not keep the rest.
            try:
                if resource.kind == "image":
                    deleted += self.delete_artifact(resource.region, resource.id, build_id)
                    continue
                project, zone, name = parse_zoned(resource.id)
                if resource.kind == "instance":
                    self.compute.delete_instance(project, zone, name)
                else:
                    self.compute.delete_disk(project, zone, name)
                deleted.append(resource)
            except (CloudError, CloudRefusedError, ForeignArtifactError) as exc:
                refused |= not isinstance(exc, CloudError)
                failures.append(f"{resource}: {exc}")
        if failures:
            # A refusal (a permission, a project) does not pass by retrying: a condition says so.
            raise (CloudRefusedError if refused else CloudError)("; ".join(failures))
        return deleted

    # -- validation instances --------------------------------------------------------------

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        gcp = settings(target)
        project, zone = gcp.project, gcp.zone
        self._learn(project)
        source = image_path(*self._image(image))
        user = KIND.login_user(target)
        build = re.sub(r"[^a-z0-9-]", "-", tags.get(labels.BUILD_ID, "").lower())
        name = f"{fit(f'validate-{build}'.rstrip('-'), 54)}-{secrets.token_hex(4)}"
        key = ssh.new_key(comment=f"goldenimage-{name}")
        spelled = KIND.tags(tags)
        params = compute_v1.AttachedDiskInitializeParams(source_image=source, labels=spelled)
        if gcp.disk_size_gb is not None:
            params.disk_size_gb = gcp.disk_size_gb
        interface = compute_v1.NetworkInterface()
        subnetwork = _subnetwork(gcp.subnetwork, zone)
        network = _network(gcp.network) or (None if subnetwork else "global/networks/default")
        if network:
            interface.network = network
        if subnetwork:
            interface.subnetwork = subnetwork
        resource = compute_v1.Instance(
            name=name,
            machine_type=f"zones/{zone}/machineTypes/{gcp.machine_type}",
            labels=spelled,
            disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=params)],
            network_interfaces=[interface],  # private address only: the validation Job is inside
            metadata=compute_v1.Metadata(
                items=[
                    compute_v1.Items(key="ssh-keys", value=f"{user}:{key.public}"),
                    # Metadata keys count only without OS Login, which a project may enable.
                    compute_v1.Items(key="enable-oslogin", value="FALSE"),
                ]
            ),
        )
        # A request id makes a retried insert the same insert.
        request = compute_v1.InsertInstanceRequest(
            project=project, zone=zone, instance_resource=resource, request_id=str(uuid.uuid4())
        )
        instances = self.compute.instances_client
        try:
            self.compute.run(
                f"launching a validation instance from {source} in {project}/{zone}",
                lambda: instances.insert(request=request, timeout=CALL_TIMEOUT),
            )
        except BaseException:
            # A failed operation may still have left the instance; nobody else knows its name.
            with contextlib.suppress(CloudError, CloudRefusedError):
                self.compute.delete_instance(project, zone, name)
            shutil.rmtree(key.private.parent, ignore_errors=True)
            raise
        path = zoned_path(project, zone, "instances", name)
        with self._lock:
            self._keys[path] = (key, user)
        return Instance(id=path, region=zone)

    def ready(self, instance: Instance) -> Instance | None:
        project, zone, name = parse_zoned(instance.id)
        instances = self.compute.instances_client
        found = self.compute.call(
            f"reading instance {name} in {project}/{zone}",
            lambda: instances.get(project=project, zone=zone, instance=name, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )
        if found is None:
            raise CloudError(f"instance {name} in {zone} is gone")
        if found.status in ("PROVISIONING", "STAGING"):
            return None
        if found.status != "RUNNING":
            raise CloudError(f"instance {name} is {found.status} instead of RUNNING")
        address = found.network_interfaces[0].network_i_p if found.network_interfaces else ""
        if not address:
            return None
        return Instance(id=instance.id, region=instance.region, address=address, public=False)

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        with self._lock:
            known = self._keys.get(instance.id)
        if known is None:
            raise CloudError(f"no SSH key for {instance.id}: it was not launched by this process")
        if not instance.address:
            raise CloudError(f"{instance.id} has no address yet")
        key, user = known
        return ssh.run(instance.address, user, key, command, timeout)

    def terminate(self, instance: Instance) -> None:
        project, zone, name = parse_zoned(instance.id)
        self.compute.delete_instance(project, zone, name)  # its boot disk goes with it (autoDelete)
        with self._lock:
            known = self._keys.pop(instance.id, None)
        if known is not None:
            shutil.rmtree(known[0].private.parent, ignore_errors=True)

    # -- publication -----------------------------------------------------------------------

    def publish(
        self, scope: PublishScope, section: BaseModel, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        assert isinstance(section, GcpPublish)
        return self._publisher.publish(scope, section, current, previous)

    # -- inside the build Job --------------------------------------------------------------

    def build_watcher(self, target: Target, build_id: str, attempt: str) -> Callable[[str], None] | None:
        """Nothing to do: Packer labels its instance, and its disk is found by name."""
        return None

    def after_build(self, target: Target, artifacts: Sequence[tuple[str, str]]) -> list[str]:
        return []
