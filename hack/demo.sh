#!/usr/bin/env bash
# The local demo on a fresh machine: set up what is missing, then run the whole loop (build,
# boot-test, promote, roll back) against a local control plane, moto and the operator.
# Extra arguments go to `goldenimage demo` (e.g. --no-wait).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash hack/setup.sh
exec .venv/bin/goldenimage demo "$@"
