"""Publication on Azure: the channel tag and the gallery "latest" a channel may own.

**Tag** (`publish.azure.tag`): carried by exactly one gallery image version per Azure target, the
current one, among the versions of the channel's namespace and GoldenImage (their tags) in the
image definitions the channel points into. The new version is tagged before the old one is
untagged, so a consumer filtering on the tag may for a moment see two (take the highest version),
never none. Tags change through the Tags API (merge and delete of one key), never by rewriting a
version's tags, so the build's own tags and revocation are never undone.

**Gallery latest** (`publish.azure.galleryLatest`): the image definition's `latest` is the highest
version not excluded from latest; builds create every version excluded. Promotion includes the
current version first, then excludes every other version of the channel's image, highest first:
at every step `latest` is the previous or the new current version, never an unvalidated one and
never none. A rollback works the same way (the older version is included, then the newer one
excluded). A definition with versions the channel's image does not own that are not excluded is
left alone (they would compete for `latest`): the publication fails and says so. A definition the
channel no longer points into has every version of the image excluded.

What a consumer sees: Terraform's

    data "azurerm_shared_image_version" "web" {
      name                = "latest"
      image_name          = "web-base"
      gallery_name        = "platform_gallery"
      resource_group_name = "rg-images"
    }

returns the channel's current version (azurerm skips versions excluded from latest); by tag,

    data "azurerm_shared_image_versions" "web" {
      image_name          = "web-base"
      gallery_name        = "platform_gallery"
      resource_group_name = "rg-images"
      tags_filter         = { golden-channel-web-candidate = "current" }
    }

lists exactly the current one (two for a moment during a promotion). VMs and scale sets built on
the definition's id get the promoted version on their next create or reimage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from ...api import labels
from ...api.errors import CloudError
from ...api.imagechannel import AzurePublish
from ..base import Pointer, PublishScope
from .arm import Arm
from .kind import KIND, GalleryVersion, version_key

NAMESPACE_KEY = KIND.tag_key(labels.NAMESPACE)
IMAGE_KEY = KIND.tag_key(labels.IMAGE)
# The operator's own tags, which a channel tag may not overwrite.
OPERATOR_KEYS = frozenset(
    KIND.tag_key(k).lower()
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
    )
)


def _tag(tags: dict[str, str] | None, key: str) -> str | None:
    return next((v for k, v in (tags or {}).items() if k.lower() == key.lower()), None)


def _excluded(version: Any) -> bool:
    profile = version.publishing_profile
    return bool(profile and profile.exclude_from_latest)


class Publisher:
    def __init__(self, arm: Arm, learn: Callable[[str], None]) -> None:
        self._arm = arm
        self._learn = learn

    def publish(
        self, scope: PublishScope, section: AzurePublish, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        changes: list[str] = []
        if section.tag is not None:
            changes += self._tag(KIND.tag_key(section.tag.key), section.tag.value, scope, current, previous)
        if section.gallery_latest:
            changes += self._latest(scope, current, previous)
        return changes

    # -- whose versions --------------------------------------------------------------------

    @staticmethod
    def _in_scope(version: Any, scope: PublishScope) -> bool:
        return _tag(version.tags, NAMESPACE_KEY) == scope.namespace and _tag(version.tags, IMAGE_KEY) == scope.image

    def _refs(self, pointers: Sequence[Pointer]) -> dict[str, GalleryVersion]:
        """Every version the pointers name (one per target: the same id in each region), by
        lower-cased id."""
        out: dict[str, GalleryVersion] = {}
        for pointer in pointers:
            try:
                ref = GalleryVersion.parse(pointer.image)
            except ValueError as exc:
                raise CloudError(f"target {pointer.target}: {exc}") from exc
            self._learn(ref.subscription)
            out[ref.id.lower()] = ref
        return out

    def _definitions(self, refs: dict[str, GalleryVersion]) -> dict[str, GalleryVersion]:
        """One version per image definition, to name the definition by."""
        return {ref.definition_id.lower(): ref for ref in refs.values()}

    def _versions(self, ref: GalleryVersion) -> list[Any]:
        """Every version of the definition `ref` is in."""
        client = self._arm.compute(ref.subscription).gallery_image_versions
        return self._arm.listed(
            f"listing the versions of image definition {ref.definition_id}",
            lambda: client.list_by_gallery_image(ref.resource_group, ref.gallery, ref.image),
        )

    def _current(self, wanted: dict[str, GalleryVersion], listed: dict[str, list[Any]], scope: PublishScope) -> None:
        """Every current version must exist and be one of the channel's image."""
        for key, ref in wanted.items():
            found = next(
                (v for v in listed.get(ref.definition_id.lower(), []) if str(v.id).lower() == key),
                None,
            )
            if found is None:
                raise CloudError(f"gallery image version {ref.id} does not exist")
            if not self._in_scope(found, scope):
                raise CloudError(
                    f"gallery image version {ref.id} is not one of {scope.namespace}/{scope.image} "
                    "(its tags say otherwise); it is left alone"
                )

    # -- the tag ---------------------------------------------------------------------------

    def _tag(
        self, key: str, value: str, scope: PublishScope, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        if key.lower() in OPERATOR_KEYS:
            raise CloudError(f"tag {key} is the operator's own; choose another key for the channel")
        wanted = self._refs(current)
        definitions = self._definitions({**self._refs(previous), **wanted})
        listed = {d: self._versions(ref) for d, ref in sorted(definitions.items())}
        self._current(wanted, listed, scope)
        carrying = {
            str(v.id).lower(): GalleryVersion.parse(str(v.id))
            for versions in listed.values()
            for v in versions
            if _tag(v.tags, key) == value and self._in_scope(v, scope)
        }
        changes: list[str] = []
        # Every new one first, in every definition: never a moment without one.
        for id_ in sorted(wanted.keys() - carrying.keys()):
            ref = wanted[id_]
            self._arm.change_tags(ref.subscription, ref.id, "Merge", {key: value})
            changes.append(f"tag {key}={value} on {ref.id}")
        for id_ in sorted(carrying.keys() - wanted.keys()):
            ref = carrying[id_]
            self._arm.change_tags(ref.subscription, ref.id, "Delete", {key: value})
            changes.append(f"tag {key}={value} removed from {ref.id}")
        return changes

    # -- the gallery's latest --------------------------------------------------------------

    def _latest(self, scope: PublishScope, current: Sequence[Pointer], previous: Sequence[Pointer]) -> list[str]:
        wanted = self._refs(current)
        by_definition: dict[str, list[GalleryVersion]] = defaultdict(list)
        for ref in wanted.values():
            by_definition[ref.definition_id.lower()].append(ref)
        for refs in by_definition.values():
            if len(refs) > 1:
                names = ", ".join(sorted(r.version for r in refs))
                raise CloudError(
                    f"versions {names} are all current in image definition {refs[0].definition_id}: its latest can "
                    "be only one of them"
                )
        definitions = self._definitions({**self._refs(previous), **wanted})
        listed = {d: self._versions(ref) for d, ref in sorted(definitions.items())}
        self._current(wanted, listed, scope)
        for definition, versions in sorted(listed.items()):
            foreign = sorted(str(v.name) for v in versions if not self._in_scope(v, scope) and not _excluded(v))
            if foreign:
                raise CloudError(
                    f"image definition {definitions[definition].definition_id} has versions {', '.join(foreign[:5])} "
                    f"that are not {scope.namespace}/{scope.image}'s and not excluded from latest; its latest is left "
                    "alone"
                )
        changes: list[str] = []
        for definition, versions in sorted(listed.items()):
            chosen = by_definition.get(definition, [None])[0]
            changes += self._make_latest(chosen, [v for v in versions if self._in_scope(v, scope)])
        return changes

    def _make_latest(self, chosen: GalleryVersion | None, versions: list[Any]) -> list[str]:
        """Include `chosen` (None: none), then exclude every other version, highest first."""
        changes: list[str] = []
        key = chosen.id.lower() if chosen is not None else None
        for version in versions:
            if str(version.id).lower() == key and _excluded(version):
                assert chosen is not None
                self._update(chosen, False)
                changes.append(f"{chosen.id} is the latest of its image definition")
        others = [v for v in versions if str(v.id).lower() != key and not _excluded(v)]
        for version in sorted(others, key=lambda v: version_key(str(v.name)), reverse=True):
            ref = GalleryVersion.parse(str(version.id))
            self._update(ref, True)
            changes.append(f"{ref.id} excluded from the latest of its image definition")
        return changes

    def _update(self, ref: GalleryVersion, exclude: bool) -> None:
        versions = self._arm.compute(ref.subscription).gallery_image_versions
        body = {"properties": {"publishingProfile": {"excludeFromLatest": exclude}}}
        self._arm.run(
            f"{'excluding' if exclude else 'including'} {ref.id} {'from' if exclude else 'in'} its definition's latest",
            lambda: versions.begin_update(ref.resource_group, ref.gallery, ref.image, ref.version, body),
        )
