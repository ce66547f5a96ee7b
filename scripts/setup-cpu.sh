#!/usr/bin/env bash
# One idempotent setup for machines without a GPU: .venv with torch, sglang 0.5.23 (without its
# CUDA-only dependencies), the pure-torch sgl_kernel stand-in, this project (editable) and test tools,
# and Debian's chromium for the browser test.
# Re-running is cheap: a stamp keyed on the dependency files skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
SGLANG_PIN="sglang==0.5.23"

# Headless Chromium for the live page's browser test (tests/e2e/test_web_page.py): Debian's package,
# never a browser download (Playwright drives it through executable_path; no `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] chromium (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] chromium is missing and cannot be installed here (needs root and apt-get): the page test will fail" >&2
  fi
fi

stamp_key=$(cat scripts/setup-cpu.sh requirements/cpu.txt cpu_support/pyproject.toml pyproject.toml | sha256sum | cut -c1-16)
stamp="$VENV/.hermes-setup-$stamp_key"
if [ -f "$stamp" ]; then
  exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
echo "[setup] torch ($TORCH_PINS)"
pip install $TORCH_PINS
echo "[setup] $SGLANG_PIN without its CUDA dependencies"
pip install --no-deps "$SGLANG_PIN"
echo "[setup] pinned runtime and test dependencies"
pip install -r requirements/cpu.txt
echo "[setup] CPU sgl_kernel stand-in"
pip install --no-build-isolation ./cpu_support
echo "[setup] sglang-hermes (editable)"
pip install --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import torch, sglang, sgl_kernel, sglang_hermes; assert getattr(sgl_kernel, 'IS_STANDIN', False)"
rm -f "$VENV"/.hermes-setup-*
touch "$stamp"
echo "[setup] done in $(( $(date +%s) - t0 )) s; venv $(du -sh "$VENV" | cut -f1)"
