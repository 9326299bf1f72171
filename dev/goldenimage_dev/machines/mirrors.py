"""The Debian mirrors this host's apt is configured with: what machine images are built from and
the only hosts the lab's apt gateway lets machines reach."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Mirror paths that hold Debian's archive and its security archive, whatever the host name.
ARCHIVE = "debian"
SECURITY = "debian-security"
DEFAULT = ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security")


@dataclass(frozen=True)
class Mirror:
    uri: str  # e.g. http://deb.debian.org/debian

    @property
    def host(self) -> str:
        return urlsplit(self.uri).hostname or ""

    @property
    def security(self) -> bool:
        return _archive(self.uri) == SECURITY

    def sources_lines(self, suite: str) -> list[str]:
        """One-line apt sources of `suite` (bookworm: bookworm and bookworm-updates, or
        bookworm-security on the security archive)."""
        suites = [f"{suite}-security"] if self.security else [suite, f"{suite}-updates"]
        return [f"deb {self.uri} {s} main" for s in suites]


def _archive(uri: str) -> str:
    return urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1]


def _uris(apt: Path) -> list[str]:
    """Every enabled deb URI in sources.list (one-line format) and sources.list.d/*.sources
    (deb822) and *.list."""
    uris: list[str] = []
    one_line = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        for line in _read(path).splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                rest = words[1:]
                if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if rest:
                    uris.append(rest[0])
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in _read(path).split("\n\n"):
            fields = _deb822(stanza)
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                uris.extend(fields.get("uris", "").split())
    return uris


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace() and key:  # a continuation line
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def configured(apt: Path = Path("/etc/apt")) -> tuple[Mirror, ...]:
    """The host's Debian archive and security mirrors (other repositories are left out); the
    canonical deb.debian.org pair when the host names none."""
    found: list[Mirror] = []
    for uri in _uris(apt):
        if urlsplit(uri).scheme in ("http", "https") and _archive(uri) in (ARCHIVE, SECURITY):
            mirror = Mirror(uri.rstrip("/"))
            if mirror not in found:
                found.append(mirror)
    if not any(not m.security for m in found):
        found.insert(0, Mirror(DEFAULT[0]))
    if not any(m.security for m in found):
        found.append(Mirror(DEFAULT[1]))
    return tuple(found)


def hosts(mirrors: tuple[Mirror, ...] | None = None) -> frozenset[str]:
    return frozenset(m.host for m in (mirrors if mirrors is not None else configured()))
