"""Kernel tests run the Triton path on CPU through the interpreter; it must be on before triton loads."""

import os
import sys

if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
    # Triton reads the switch once, at import: a test module collected earlier imported it (through SGLang).
    raise RuntimeError("triton was imported before tests/kernels could turn its interpreter on: a test module "
                       "imports sglang (and with it triton) at collection; import it inside the test instead")
os.environ.setdefault("TRITON_INTERPRET", "1")
