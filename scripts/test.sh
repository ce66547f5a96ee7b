#!/usr/bin/env bash
# The README's test command: set up if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-cpu.sh
exec .venv/bin/python -m pytest tests "$@"
