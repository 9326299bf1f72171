#!/usr/bin/env bash
# Prepares a fresh Debian machine (or a developer's) for the tests and the local demo:
#   - .venv with the package, its test extra and the local stack (the goldenimage-dev distribution in dev/),
#   - Packer (Debian's package) if no packer is on PATH, and mmdebstrap,
#   - the base images of the test machines (built from the Debian mirror, cached),
#   - the control plane binaries and helm, built with Go once and then cached (not when
#     KUBEBUILDER_ASSETS, GOLDENIMAGE_TEST_KUBECONFIG or HELM say where to find them).
# Every step is skipped when already done, so running it again takes seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}
apt_updated=""
apt_install() {
  if [[ -z $apt_updated ]]; then as_root apt-get update -qq && apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || { echo "Python 3.11 or newer is needed as $python (set PYTHON to choose another)" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv"
  if ! "$python" -m venv .venv 2>/dev/null; then
    # Debian ships venv separately.
    rm -rf .venv
    minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python$minor-venv" \
      || { echo "$python cannot create a venv; install python$minor-venv and re-run" >&2; exit 1; }
    "$python" -m venv .venv
  fi
fi
stamp=".venv/.installed-$(cat pyproject.toml dev/pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f $stamp ]]; then
  step "installing the package, its test dependencies and the local stack (dev/) into .venv"
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e '.[test]' -e ./dev
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if ! command -v mmdebstrap >/dev/null; then
  step "installing mmdebstrap (Debian package), which builds the test machines' base images"
  apt_install mmdebstrap uidmap || { echo "mmdebstrap is missing and cannot be installed without root; install it and re-run" >&2; exit 1; }
fi

if ! command -v packer >/dev/null; then
  step "installing packer (Debian package)"
  apt_install packer || { echo "packer is missing and cannot be installed without root; install it and re-run" >&2; exit 1; }
fi

# Binaries from elsewhere need no build (and no Go).
if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
  step "control plane binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
elif [[ -n ${GOLDENIMAGE_TEST_KUBECONFIG:-} ]]; then
  step "tests use the cluster of GOLDENIMAGE_TEST_KUBECONFIG (end-to-end tests and the demo need the local control plane)"
else
  step "control plane binaries"
  bash hack/build-control-plane.sh >/dev/null
fi
if [[ -n ${HELM:-} ]]; then
  step "helm from HELM=$HELM"
else
  step "helm"
  bash hack/build-helm.sh >/dev/null
fi
# The machines the end-to-end tests boot: Debian images from the mirror, cached by recipe.
step "base images of the test machines"
.venv/bin/python -m goldenimage_dev.machines build-images >/dev/null
step "ready"
