#!/usr/bin/env bash
# Prepares a fresh Debian machine (or a developer's) for the tests and the local demo:
#   - .venv with the package and its test extra,
#   - Packer (Debian's package) if no packer is on PATH,
#   - the control plane binaries, built from the Kubernetes Go modules once and then cached.
# Every step is skipped when already done, so running it again takes seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '==> %s\n' "$*" >&2; }

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f $stamp ]]; then
  step "installing the package and its test dependencies into .venv"
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}
apt_updated=""
apt_install() {
  if [[ -z $apt_updated ]]; then as_root apt-get update -qq && apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v packer >/dev/null; then
  step "installing packer (Debian package)"
  apt_install packer || { echo "packer is missing and cannot be installed without root; install it and re-run" >&2; exit 1; }
fi

step "control plane binaries"
bash hack/build-control-plane.sh >/dev/null
step "helm"
bash hack/build-helm.sh >/dev/null
step "ready"
