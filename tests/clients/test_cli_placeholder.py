"""The hermes-stream console script is installed and answers --help (its streaming is issue #6's)."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_hermes_stream_console_script_prints_usage():
    exe = shutil.which("hermes-stream", path=str(Path(sys.executable).parent))
    assert exe, "hermes-stream is not installed next to this interpreter"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--ask" in out.stdout and "T:QUESTION" in out.stdout


def test_hermes_stream_rejects_a_malformed_ask():
    out = subprocess.run([sys.executable, "-m", "clients.hermes_stream", "v.mp4", "--ask", "no-colon"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "T:QUESTION" in out.stderr
