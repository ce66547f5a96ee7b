"""The soak (bench/soak.py) for one minute against the shared server: 3 streams appending and asking
while every kind of fault is fired back to back. Nothing may crash, no legal request may fail, no
stream may exceed its budget, and once every stream is closed the KV pool is back where it started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.server


def test_soak_one_minute(qwen_server, tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--smoke", "--base-url",
                           qwen_server.base_url, "--server-pid", str(qwen_server.proc.pid), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert proc.returncode == 0 and result["ok"], f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert result["crashes"] == 0 and result["leaked_slots"] == 0 and result["failed_legal_requests"] == 0
    assert result["over_budget"] == 0
    assert result["faults_total"] >= 5 and result["turns"]["append"] > result["faults_total"]
    assert qwen_server.proc.poll() is None
    assert "Scheduler hit an exception" not in qwen_server.log_text()
