#!/usr/bin/env bash
# The local demo on a fresh machine: set up what is missing, then run the whole loop (build,
# boot-test, promote, roll back) against a local control plane, the local clouds on real
# machines and the operator, all in a network namespace of its own (the lab).
# Extra arguments go to `goldenimage-dev demo` (e.g. --no-wait).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash hack/setup.sh
exec .venv/bin/python -m goldenimage_dev.machines lab -- .venv/bin/goldenimage-dev demo "$@"
