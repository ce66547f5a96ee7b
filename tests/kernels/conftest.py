"""Kernel tests run the Triton path on CPU through the interpreter; it must be on before triton loads."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
