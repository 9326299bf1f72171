#!/usr/bin/env bash
# Runs every check and every test tier on this machine, setting up what is missing first:
# lint and types, the layering contract, the CRD drift check, then pytest over unit, integration (real control plane)
# and end-to-end tests. Extra arguments go to pytest (e.g. `./hack/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash hack/setup.sh
.venv/bin/ruff check operator dev tests
.venv/bin/ruff format --check operator dev tests
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m goldenimage.api.crdgen --check
# The tests run in a lab: a network namespace of their own where the control plane, the cloud
# fakes, Packer and the machines live; nothing of it outlives the run.
# pytest exits 5 when it ran no test; that fails this script like any other failure.
exec .venv/bin/python -m goldenimage_dev.machines lab -- .venv/bin/python -m pytest "$@"
