"""The last provisioning steps: generalization, and the scan that keeps secrets out of images."""

from __future__ import annotations

# Run as root at the end of every build with `generalize: true`: the image must carry no machine
# identity, no host keys, no keys that could log in and no shell history.
LINUX = (
    "set -eu",
    "if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs --seed || cloud-init clean --logs; fi",
    "truncate -s 0 /etc/machine-id",
    "rm -f /var/lib/dbus/machine-id",
    "rm -f /etc/ssh/ssh_host_*",
    "find /root /home -path '*/.ssh/authorized_keys' -type f -delete 2>/dev/null || true",
    "find /root /home -maxdepth 2 -name '.*_history' -type f -delete 2>/dev/null || true",
    "rm -rf /tmp/* /var/tmp/*",
)

# Azure's agent holds the provisioning user and its own state: deprovisioned last, as Azure
# requires of generalized Linux images.
AZURE = ("if command -v waagent >/dev/null 2>&1; then waagent -force -deprovision+user; fi", "sync")

# Where provisioning leaves files; the scan stays out of /proc, /sys and the package database.
SCANNED = (
    "/etc",
    "/home",
    "/root",
    "/opt",
    "/srv",
    "/usr/local",
    "/var/lib/cloud",
    "/var/log",
    "/tmp",
    "/var/tmp",
)


def secret_scan(names: list[str]) -> list[str]:
    """Shell lines that fail when any secret variable's value (in GOLDENIMAGE_SECRET_<n>) is found
    in a file of the image. The value itself is never printed."""
    lines = ["set -u", "found=0"]
    for index, name in enumerate(names):
        lines.append(
            f'if [ -n "${{GOLDENIMAGE_SECRET_{index}}}" ] && '
            f'grep -rlsF -- "${{GOLDENIMAGE_SECRET_{index}}}" {" ".join(SCANNED)}; then '
            f'echo "the value of secret variable {name} was found in the files above" >&2; found=1; fi'
        )
    lines.append('[ "$found" = 0 ] || { echo "refusing to capture an image that contains a secret" >&2; exit 1; }')
    return lines
