"""Base images of machines: Debian root filesystems built with mmdebstrap from the host's
configured Debian mirror and cached under ~/.cache/goldenimage/images/<recipe hash>/
(GOLDENIMAGE_CACHE moves the cache root).

Two variants: `base` (systemd, sshd, sudo, python3: what Packer's shell, file and ansible
provisioners need) and `cloud-init` (the same plus cloud-init, reading a NoCloud seed). Both are
prepared like a cloud image: host keys made on first boot, an empty machine-id, no login user
(the boot seed creates it), no getty on a console nobody watches, no apt timers.

An entry is keyed by its recipe (suite, packages, tweaks, format version), built in a temporary
directory beside it and renamed into place when complete, under a lock: a half-built entry is
never used, and concurrent builders wait for one another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import mirrors

FORMAT = 2
SUITE = "bookworm"
VARIANTS = ("base", "cloud-init")

BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "openssh-sftp-server",  # Ansible and Packer's file provisioner copy files over SFTP
    "sudo",
    "python3",  # Ansible's modules
    "python3-apt",  # Ansible's apt module
    "iproute2",
    "ca-certificates",
    "curl",
    "procps",
    "netbase",
)
CLOUD_INIT_PACKAGES = ("cloud-init", "locales")

# Run by mmdebstrap as a customize hook with the new root as $1.
TWEAKS = r"""
set -eu
root=$1
# Host keys are made on the first boot of every machine, never baked into an image.
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root"/etc/systemd/system/goldenimage-host-keys.service <<'UNIT'
[Unit]
Description=Generate missing SSH host keys
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target ssh.service
UNIT
chroot "$root" systemctl enable goldenimage-host-keys.service
# No console to log in on, and no apt run nobody asked for.
chroot "$root" systemctl mask console-getty.service apt-daily.timer apt-daily-upgrade.timer
# A fresh identity per machine.
: > "$root"/etc/machine-id
rm -f "$root"/var/lib/dbus/machine-id
printf 'localhost\n' > "$root"/etc/hostname
# The lab has no DNS: with no name server, lookups fail at once instead of timing out.
printf '# no name servers\n' > "$root"/etc/resolv.conf
"""

CLOUD_INIT_TWEAKS = r"""
set -eu
root=$1
# Only the local NoCloud seed: probing metadata services would time out in the lab. The host
# sets the network up.
cat > "$root"/etc/cloud/cloud.cfg.d/90-goldenimage.cfg <<'CFG'
datasource_list: [NoCloud, None]
network: {config: disabled}
CFG
# The locale cloud-init sets, generated once here instead of on every first boot.
printf 'en_US.UTF-8 UTF-8\n' > "$root"/etc/locale.gen
chroot "$root" locale-gen
printf 'LANG=en_US.UTF-8\n' > "$root"/etc/default/locale
"""


@dataclass(frozen=True)
class Recipe:
    variant: str
    suite: str
    packages: tuple[str, ...]
    tweaks: tuple[str, ...]
    format: int = FORMAT

    @classmethod
    def of(cls, variant: str) -> Recipe:
        if variant == "base":
            return cls(variant, SUITE, BASE_PACKAGES, (TWEAKS,))
        if variant == "cloud-init":
            return cls(variant, SUITE, BASE_PACKAGES + CLOUD_INIT_PACKAGES, (TWEAKS, CLOUD_INIT_TWEAKS))
        raise ValueError(f"unknown image variant {variant!r} (known: {', '.join(VARIANTS)})")

    @property
    def key(self) -> str:
        text = json.dumps(
            [self.variant, self.suite, sorted(self.packages), list(self.tweaks), self.format], sort_keys=True
        )
        return f"{self.variant}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Image:
    """A built base image: `rootfs` is the directory machines stack their layers on."""

    recipe: Recipe
    path: Path

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


class ImageBuildError(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("GOLDENIMAGE_CACHE") or Path.home() / ".cache" / "goldenimage")


def images_dir() -> Path:
    return cache_root() / "images"


def cached(variant: str) -> Image | None:
    recipe = Recipe.of(variant)
    image = Image(recipe, images_dir() / recipe.key)
    return image if (image.path / "recipe.json").is_file() else None


def ensure(variant: str, *, apt_proxy: str | None = None) -> Image:
    """The cached image of `variant`, built first if there is none. `apt_proxy` (e.g. the lab's
    gateway) is where apt fetches from; without it, the mirror is reached directly."""
    recipe = Recipe.of(variant)
    final = images_dir() / recipe.key
    if (final / "recipe.json").is_file():
        return Image(recipe, final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "recipe.json").is_file():  # another builder finished while we waited
            return Image(recipe, final)
        building = final.with_name(f"{final.name}.building")
        shutil.rmtree(building, ignore_errors=True)  # what a killed build left
        shutil.rmtree(final, ignore_errors=True)
        building.mkdir()
        _mmdebstrap(recipe, building, apt_proxy)
        (building / "recipe.json").write_text(
            json.dumps({"variant": recipe.variant, "suite": recipe.suite, "packages": list(recipe.packages)}, indent=2)
        )
        building.rename(final)
    return Image(recipe, final)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _mmdebstrap(recipe: Recipe, directory: Path, apt_proxy: str | None) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError("mmdebstrap is not installed: apt-get install -y mmdebstrap")
    argv = [
        mmdebstrap,
        "--mode=root",
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        *(f"--customize-hook={tweak}" for tweak in recipe.tweaks),
        recipe.suite,
        str(directory / "rootfs"),
        *(line for mirror in mirrors.configured() for line in mirror.sources_lines(recipe.suite)),
    ]
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    if apt_proxy:
        # apt's http method reads the proxy from the environment; nothing of it enters the image.
        env["http_proxy"] = apt_proxy
    log = directory / "mmdebstrap.log"
    with log.open("wb") as out:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log.read_bytes()[-4000:].decode(errors="replace")
        raise ImageBuildError(f"mmdebstrap of the {recipe.variant} image failed ({done.returncode}):\n{tail}")


def build_all(apt_proxy: str | None = None) -> list[tuple[Image, float]]:
    """Every variant, with the seconds each took (cached ones take next to none)."""
    built = []
    for variant in VARIANTS:
        start = time.monotonic()
        image = ensure(variant, apt_proxy=apt_proxy)
        built.append((image, time.monotonic() - start))
    return built
