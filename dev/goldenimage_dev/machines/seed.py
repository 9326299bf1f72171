"""What a machine is told at boot: its hostname, its login user with password-less sudo and
authorized keys, and its apt proxy. On images without cloud-init a script applies it before
systemd starts (as the clouds' guest agents would); on images with cloud-init it becomes a
NoCloud seed that cloud-init applies."""

from __future__ import annotations

import json
import re
import shlex

from goldenimage_dev.fakes.hypervisor import Boot, HypervisorError

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
NOCLOUD = "/var/lib/cloud/seed/nocloud"
APT_PROXY_FILE = "/etc/apt/apt.conf.d/90goldenimage-proxy"


def check(request: Boot) -> None:
    if not _USER.fullmatch(request.user):
        raise HypervisorError(f"not a login user name: {request.user!r}")
    if request.hostname and not _HOSTNAME.fullmatch(request.hostname):
        raise HypervisorError(f"not a host name: {request.hostname!r}")
    for key in request.public_keys:
        if "\n" in key or "\r" in key or not key.strip():
            raise HypervisorError("a public key must be one line of OpenSSH format")


def hostname(request: Boot) -> str:
    return request.hostname or "ip-" + request.address.replace(".", "-")


def script(request: Boot, apt_proxy: str) -> str:
    """A shell script run as root in the machine's root filesystem before it boots."""
    user, host = request.user, hostname(request)
    keys = "".join(f"{k.strip()}\n" for k in request.public_keys)
    q = shlex.quote
    return f"""set -eu
printf '%s\\n' {q(host)} > /etc/hostname
grep -v ' goldenimage-host$' /etc/hosts > /etc/hosts.new || true
printf '127.0.1.1 %s  # goldenimage-host\\n' {q(host)} >> /etc/hosts.new
mv /etc/hosts.new /etc/hosts
printf 'Acquire::http::Proxy "%s";\\n' {q(apt_proxy)} > {APT_PROXY_FILE}
id -u {q(user)} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {q(user)}
printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {q(user)} > /etc/sudoers.d/90-goldenimage-{user}
chmod 0440 /etc/sudoers.d/90-goldenimage-{user}
home=$(getent passwd {q(user)} | cut -d: -f6)
install -d -m 0700 -o {q(user)} -g "$(id -gn {q(user)})" "$home/.ssh"
touch "$home/.ssh/authorized_keys"
printf '%s' {q(keys)} | while IFS= read -r key; do
  grep -qxF "$key" "$home/.ssh/authorized_keys" || printf '%s\\n' "$key" >> "$home/.ssh/authorized_keys"
done
chown {q(user)}:"$(id -gn {q(user)})" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
"""


def nocloud(request: Boot, apt_proxy: str) -> dict[str, str]:
    """The NoCloud seed's files (meta-data, user-data) for cloud-init. JSON is valid YAML."""
    meta = {"instance-id": request.name, "local-hostname": hostname(request)}
    user_data = {
        "users": [
            {
                "name": request.user,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": [k.strip() for k in request.public_keys],
            }
        ],
        "apt": {"http_proxy": apt_proxy},
        "manage_etc_hosts": "localhost",
        "ssh_pwauth": False,
    }
    return {"meta-data": json.dumps(meta) + "\n", "user-data": "#cloud-config\n" + json.dumps(user_data) + "\n"}


def nocloud_script(request: Boot, apt_proxy: str) -> str:
    """Writes the NoCloud seed where cloud-init looks for it, replacing an earlier one."""
    lines = ["set -eu", f"rm -rf {NOCLOUD}", f"mkdir -p {NOCLOUD}"]
    for name, content in nocloud(request, apt_proxy).items():
        lines.append(f"printf '%s' {shlex.quote(content)} > {NOCLOUD}/{name}")
    return "\n".join(lines) + "\n"
