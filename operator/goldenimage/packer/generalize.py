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


def secret_scan(names: list[str], scanned: tuple[str, ...] = SCANNED) -> list[str]:
    """Shell lines that fail when any secret variable's value (in GOLDENIMAGE_SECRET_<n>) is found
    in a file of the image. The value itself is never printed, only (up to 20 of) the files
    holding it."""
    lines = ["set -u", "found=0"]
    for index, name in enumerate(names):
        # grep -F takes each line of its pattern as a pattern of its own, and an empty one matches
        # every file: a value of several lines (a key, a file's content with its final newline) is
        # searched for by its longest line.
        lines.append(
            f'needle=$(printf "%s\\n" "${{GOLDENIMAGE_SECRET_{index}}}" | '
            "awk 'length($0) > length(best) { best = $0 } END { print best }')"
        )
        # grep's status is no verdict: a directory the image lacks makes it 2 even with a match.
        lines.append(
            'if [ -n "$needle" ]; then '
            f'hits=$(grep -rlsF -- "$needle" {" ".join(scanned)} | head -n 20); '
            'if [ -n "$hits" ]; then echo "$hits" >&2; '
            f'echo "the value of secret variable {name} was found in the files above" >&2; found=1; fi; fi'
        )
    lines.append('[ "$found" = 0 ] || { echo "refusing to capture an image that contains a secret" >&2; exit 1; }')
    return lines
