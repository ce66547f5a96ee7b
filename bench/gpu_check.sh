#!/usr/bin/env bash
# The first run of sglang-hermes on a GPU machine: what the CPU suite cannot show (docs/gpu-check.md).
# One line per check, PASS or FAIL with its numbers; exit status = number of FAILs. At most ~8 minutes.
#
#   bench/gpu_check.sh                                   # the tiny test model (~3 min)
#   bench/gpu_check.sh --model Qwen/Qwen2.5-VL-7B-Instruct
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MODEL_ARGS=("$@")
MODEL=${2:-}
FAILS=0

check() {  # check NAME COMMAND...: PASS/FAIL line with the wall time and the command's last line
  local name=$1 start out status
  shift
  start=$(date +%s)
  out=$("$@" 2>&1)
  status=$?
  if [ $status -eq 0 ]; then echo "PASS $name ($(($(date +%s) - start)) s)"
  else echo "FAIL $name ($(($(date +%s) - start)) s): $(printf '%s\n' "$out" | tail -n 1)"; FAILS=$((FAILS + 1)); fi
}

refused() {  # refused LINE_PART FLAGS...: hermes-serve exits non-zero at start, with its one-line refusal
  local part=$1 out
  shift
  out=$(timeout 120 "$PY" -m sglang_hermes.launch_server --model-path "${MODEL:-unused}" --port 1 "$@" 2>&1)
  [ $? -ne 0 ] && printf '%s\n' "$out" | grep -q "sglang-hermes refuses to start:.*$part"
}

check "CUDA device visible" "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
check "startup gate: fp8 KV refused" refused "--kv-cache-dtype fp8_e4m3" --kv-cache-dtype fp8_e4m3
check "startup gate: speculative decoding refused" refused "--speculative-algorithm EAGLE" --speculative-algorithm EAGLE
check "startup gate: prefill CUDA graphs refused" refused "--cuda-graph-backend-prefill breakable" \
  --cuda-graph-backend-prefill breakable

# These print their own PASS/FAIL lines with numbers.
"$PY" bench/gpu_check.py kernels "${MODEL_ARGS[@]}" || FAILS=$((FAILS + 1))
"$PY" bench/gpu_check.py stream "${MODEL_ARGS[@]}" | tee /tmp/hermes-gpu-check-overlap.txt
[ "${PIPESTATUS[0]}" -eq 0 ] || FAILS=$((FAILS + 1))
"$PY" bench/gpu_check.py stream "${MODEL_ARGS[@]}" -- --disable-overlap-schedule \
  | tee /tmp/hermes-gpu-check-no-overlap.txt
[ "${PIPESTATUS[0]}" -eq 0 ] || FAILS=$((FAILS + 1))
on=$(grep -o 'digest [0-9a-f]*' /tmp/hermes-gpu-check-overlap.txt)
off=$(grep -o 'digest [0-9a-f]*' /tmp/hermes-gpu-check-no-overlap.txt)
if [ -n "$on" ] && [ "$on" = "$off" ]; then echo "PASS compressed stream identical with overlap on and off ($on)"
else echo "FAIL compressed stream differs between overlap on ($on) and off ($off)"; FAILS=$((FAILS + 1)); fi

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "${GPUS:-0}" -ge 2 ]; then
  check "tp=2 refused at start (no cross-rank reduction yet)" refused "--tp-size 2" --tp-size 2
else
  echo "SKIP tp=2: $GPUS GPU(s)"
fi
echo "$FAILS check(s) failed"
exit "$FAILS"
