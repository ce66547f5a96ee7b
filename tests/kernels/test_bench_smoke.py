"""bench/kernels.py --smoke runs end to end (so the benchmark cannot rot) and its checks agree."""

import re
import subprocess
import sys
from pathlib import Path


def test_kernel_benchmark_smoke():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "bench" / "kernels.py"), "--smoke"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    errors = {m[0]: float(m[1]) for m in re.findall(r"^(\w+)\s+max\|triton - reference\| = (\S+)", out.stdout, re.M)}
    assert set(errors) == {"attention_mass", "mix_smooth", "rerotate", "compact"}
    assert max(errors.values()) < 1e-4
    assert "no GPU present" in out.stdout
