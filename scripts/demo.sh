#!/usr/bin/env bash
# The README's main command: set up if needed, build a tiny model, serve it with hermes-serve,
# stream a synthetic video into it with the openai client, print answers, timings and stats.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-cpu.sh
exec .venv/bin/python -m sglang_hermes.demo "$@"
