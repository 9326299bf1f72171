"""Resource links, as clients write them: full URLs (`https://compute.googleapis.com/compute/v1/
projects/P/...`), partial paths (`projects/P/zones/Z/disks/D`, `zones/Z/disks/D`,
`global/images/family/F`), and Packer 1.6.6's `.../compute/v1/P/zones/...` without `projects/`."""

from __future__ import annotations

import re
from dataclasses import dataclass

BASE = "https://compute.googleapis.com/compute/v1/"
_PREFIX = re.compile(r"^(?:https?://[^/]+)?/?(?:compute/(?:v1|beta|alpha)/)?")
_SCOPES = ("global", "zones", "regions")


def url(path: str) -> str:
    return BASE + path


@dataclass(frozen=True)
class Link:
    """A parsed link: the project and the path below it (e.g. ("zones", "Z", "disks", "D"))."""

    project: str
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    def path(self) -> str:
        return "/".join(("projects", self.project, *self.parts))


def parse(link: str, *, project: str) -> Link:
    """`link` relative to `project` when it names none."""
    parts = [p for p in _PREFIX.sub("", link.strip()).split("/") if p]
    if parts[:1] == ["projects"] and len(parts) > 1:
        return Link(parts[1], tuple(parts[2:]))
    if len(parts) > 1 and parts[0] not in _SCOPES and parts[1] in _SCOPES:
        return Link(parts[0], tuple(parts[1:]))  # Packer's sourceDisk: no "projects/"
    return Link(project, tuple(parts))


def last(link: str) -> str:
    """The last segment: the name in a link, or the link itself when it is a bare name."""
    return link.rstrip("/").rsplit("/", 1)[-1]
