#!/usr/bin/env bash
# The README's test command: set up if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-cpu.sh
# Two workers (pytest-xdist): each session server starts on one worker only (tests/conftest.py groups
# the tests by the servers they use), so the two cores overlap server starts, the HF oracles and the
# unit tests. HERMES_TEST_WORKERS=0 runs everything in one process.
exec .venv/bin/python -m pytest tests -n "${HERMES_TEST_WORKERS:-2}" --dist loadgroup "$@"
