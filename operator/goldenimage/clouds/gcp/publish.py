"""Publication on GCP: the channel label and the image family a channel owns.

**Label** (`publish.gcp.label`): carried by exactly one image per channel and GCP target, the
current one, among the images of the channel's namespace and GoldenImage (their labels). The new
image is labelled before the old one is unlabelled, so a consumer filtering on the label may for a
moment see two (take the newest), never none.

**Family** (`publish.gcp.family`): builds join no family; the channel's family holds copies of
the images it pointed at, one per version, in the project of the target's image, each named
`<family>-<image>` (fitted to 63 characters), labelled as the image plus
`goldenimage.io/channel`. Promotion makes the current image's copy the family's only active member
the channel owns: the copy is created (or, on a rollback, the older copy reactivated) first, then
every other member is set DEPRECATED with the copy as `replacement`. GCE resolves a family to its
newest member that is READY and not deprecated, so the family never resolves to nothing for longer
than that second call. A family with members the channel does not own (by their namespace, image
and channel labels) is left alone, and so is a copy's name taken by an image that is not the
channel's: the publication fails and says so.

What a consumer sees: Terraform's

    data "google_compute_image" "web" {
      project = "platform-images"
      family  = "web-base-candidate"
    }

(images.getFromFamily) returns the channel's current copy: its `self_link`, its name
`web-base-candidate-web-base-gcp-3-...-a1`, and the labels naming the version and build. After a
promotion or rollback the next plan sees the new copy; instances and templates that name an older
copy by its link keep working, with GCE's deprecation warning and the replacement's link. A
project the channel no longer publishes to (its targets changed) has every copy deprecated with no
replacement: the family then resolves to nothing the channel owns. Copies carry their build's id,
so deleting a build under `deletionPolicy: Delete` deletes its copies with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from google.cloud import compute_v1

from ...api import labels
from ...api.errors import CloudError
from ...api.imagechannel import GcpPublish
from ...api.names import fit
from ..base import Pointer, PublishScope
from .compute import Compute, deprecation, label_filter
from .kind import KIND, image_path, label_value, parse_image

# Which channel owns a family copy.
CHANNEL = labels.CHANNEL
CHANNEL_KEY = KIND.tag_key(CHANNEL)
NAMESPACE_KEY = KIND.tag_key(labels.NAMESPACE)
IMAGE_KEY = KIND.tag_key(labels.IMAGE)
# The operator's own labels, which a channel label may not overwrite.
OPERATOR_KEYS = frozenset(
    KIND.tag_key(k)
    for k in (
        labels.BUILD_ID,
        labels.IMAGE,
        labels.NAMESPACE,
        labels.VERSION,
        labels.TARGET,
        labels.ATTEMPT,
        labels.MANAGED_BY,
        labels.REVOKED,
        labels.ROLE,
        CHANNEL,
    )
)
# Not carried over to a copy: they describe the build's attempt, not the version.
_NOT_COPIED = frozenset(KIND.tag_key(k) for k in (labels.ATTEMPT, labels.REVOKED))


def copy_name(family: str, image: str) -> str:
    return fit(f"{family}-{image}", 63)


class Publisher:
    def __init__(self, compute: Compute, learn: Callable[[str], None]) -> None:
        self._compute = compute
        self._learn = learn

    def publish(
        self, scope: PublishScope, section: GcpPublish, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        changes: list[str] = []
        if section.label is not None:
            changes += self._label(section.label.key, section.label.value, scope, current, previous)
        if section.family is not None:
            skip = section.label.key if section.label is not None else None
            changes += self._family(section.family, scope, current, previous, skip)
        return changes

    # -- whose images ----------------------------------------------------------------------

    @staticmethod
    def _scope_labels(scope: PublishScope) -> dict[str, str]:
        return {NAMESPACE_KEY: label_value(scope.namespace), IMAGE_KEY: label_value(scope.image)}

    def _in_scope(self, image: compute_v1.Image, scope: PublishScope) -> bool:
        return all(image.labels.get(k) == v for k, v in self._scope_labels(scope).items())

    def _owned_copy(self, image: compute_v1.Image, scope: PublishScope) -> bool:
        return self._in_scope(image, scope) and image.labels.get(CHANNEL_KEY) == label_value(scope.channel)

    def _by_project(self, pointers: Sequence[Pointer]) -> dict[str, list[tuple[str, str]]]:
        """project -> [(target, image name)]"""
        out: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for pointer in pointers:
            project, name = parse_image(pointer.image)
            if project is None:
                raise CloudError(f"image {pointer.image!r} of target {pointer.target} names no project")
            self._learn(project)
            out[project].append((pointer.target, name))
        return out

    def _source(self, project: str, name: str, scope: PublishScope) -> compute_v1.Image:
        """A current image, which must be one of the channel's namespace and GoldenImage."""
        image = self._compute.image(project, name)
        if image is None:
            raise CloudError(f"image {image_path(project, name)} does not exist")
        if not self._in_scope(image, scope):
            raise CloudError(
                f"image {image_path(project, name)} is not one of {scope.namespace}/{scope.image} "
                "(its labels say otherwise); it is left alone"
            )
        return image

    # -- the label -------------------------------------------------------------------------

    def _label(
        self, key: str, value: str, scope: PublishScope, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        if key in OPERATOR_KEYS:
            raise CloudError(f"label {key} is the operator's own; choose another key for the channel")
        wanted = {project: {name for _, name in items} for project, items in self._by_project(current).items()}
        projects = sorted(wanted.keys() | self._by_project(previous).keys())
        carrying_filter = label_filter({key: value, **self._scope_labels(scope)})
        carrying: dict[str, set[str]] = {}
        for project in projects:
            for name in wanted.get(project, set()):
                self._source(project, name, scope)
            carrying[project] = {i.name for i in self._compute.images(project, carrying_filter)}
        changes: list[str] = []

        def add(labels_: dict[str, str]) -> dict[str, str]:
            return {**labels_, key: value}

        def remove(labels_: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in labels_.items() if not (k == key and v == value)}

        # Every new one first, in every project: never a moment without one.
        for project in projects:
            for name in sorted(wanted.get(project, set()) - carrying[project]):
                if self._compute.relabel(project, name, add):
                    changes.append(f"label {key}={value} on {image_path(project, name)}")
        for project in projects:
            for name in sorted(carrying[project] - wanted.get(project, set())):
                if self._compute.relabel(project, name, remove):
                    changes.append(f"label {key}={value} removed from {image_path(project, name)}")
        return changes

    # -- the family ------------------------------------------------------------------------

    def _family(
        self,
        family: str,
        scope: PublishScope,
        current: Sequence[Pointer],
        previous: Sequence[Pointer],
        skip_label: str | None,
    ) -> list[str]:
        wanted = self._by_project(current)
        for project, items in sorted(wanted.items()):
            if len(items) > 1:
                targets = ", ".join(sorted(t for t, _ in items))
                raise CloudError(
                    f"targets {targets} all build in project {project}: image family {family} can name only one "
                    "image there"
                )
        projects = sorted(wanted.keys() | self._by_project(previous).keys())
        members: dict[str, list[compute_v1.Image]] = {}
        for project in projects:
            found = [i for i in self._compute.images(project, f'family = "{family}"') if i.family == family]
            foreign = sorted(i.name for i in found if not self._owned_copy(i, scope))
            if foreign:
                raise CloudError(
                    f"image family {family} in project {project} has members channel {scope.namespace}/"
                    f"{scope.channel} does not own ({', '.join(foreign[:5])}); it is left alone"
                )
            members[project] = found
        changes: list[str] = []
        for project in projects:
            if project in wanted:
                changes += self._promote(family, scope, project, wanted[project][0][1], members[project], skip_label)
            else:
                changes += self._retire(family, project, members[project], replacement=None)
        return changes

    def _promote(
        self,
        family: str,
        scope: PublishScope,
        project: str,
        name: str,
        members: list[compute_v1.Image],
        skip_label: str | None,
    ) -> list[str]:
        changes: list[str] = []
        wanted = copy_name(family, name)
        copy = next((m for m in members if m.name == wanted), None) or self._compute.image(project, wanted)
        if copy is not None and not (self._owned_copy(copy, scope) and copy.family == family):
            raise CloudError(
                f"image {image_path(project, wanted)} exists and is not channel {scope.namespace}/{scope.channel}'s "
                f"copy in family {family}; it is left alone"
            )
        if copy is None:
            source = self._source(project, name, scope)
            copied = {
                k: v for k, v in source.labels.items() if k not in _NOT_COPIED and k != skip_label and k != CHANNEL_KEY
            }
            copied[CHANNEL_KEY] = label_value(scope.channel)
            self._compute.insert_image(
                project,
                compute_v1.Image(
                    name=wanted,
                    source_image=source.self_link,
                    family=family,
                    labels=copied,
                    storage_locations=list(source.storage_locations),
                    description=f"{image_path(project, name)} as published by channel {scope.namespace}/"
                    f"{scope.channel}",
                ),
            )
            changes.append(f"copied {image_path(project, name)} into family {family} as {wanted}")
            copy = self._compute.image(project, wanted)
            if copy is None:
                raise CloudError(f"image {image_path(project, wanted)} vanished right after it was created")
        if copy.status != "READY":
            # GCE resolves a family only to READY images: the older ones stay until it is.
            raise CloudError(f"image {image_path(project, wanted)} is {copy.status}; the family moves once it is READY")
        if deprecation(copy) != "ACTIVE":
            self._compute.set_deprecation(project, wanted, "ACTIVE")
            changes.append(f"{wanted} active again in family {family}")
        others = [m for m in members if m.name != wanted]
        return changes + self._retire(family, project, others, replacement=copy.self_link)

    def _retire(
        self, family: str, project: str, members: Sequence[compute_v1.Image], replacement: str | None
    ) -> list[str]:
        """DEPRECATED (pointing at `replacement`) every member that is not already; OBSOLETE and
        DELETED ones, which someone set on purpose, stay so."""
        changes: list[str] = []
        for member in sorted(members, key=lambda m: m.name):
            state = deprecation(member)
            if state in ("OBSOLETE", "DELETED"):
                continue
            if state == "DEPRECATED" and (member.deprecated.replacement or None) == replacement:
                continue
            self._compute.set_deprecation(project, member.name, "DEPRECATED", replacement)
            changes.append(f"{member.name} deprecated in family {family}")
        return changes
