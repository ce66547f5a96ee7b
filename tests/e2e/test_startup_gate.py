"""The startup gate: every configuration a stream cannot run in makes the server exit non-zero at start with
one line naming what is supported (docs/install.md, "Supported configurations").

Each row starts a real process. Flag refusals come from ``hermes-serve`` before SGLang parses or loads
anything, so those rows take seconds; the model row goes as far as the scheduler (its cache factory),
since only the loaded model reveals what it refuses.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import pkgutil
import shutil
import signal
import subprocess
import sys

import pytest

from sglang_hermes.layout import STREAM_MODEL_TYPES
from sglang_hermes.runtime.capabilities import PREFIX, SUPPORTED_SGLANG, architecture_refusals, unpatched_hook_targets


def _run(command: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run to exit in its own process group; on a timeout the whole group (SGLang's children too) is killed."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/tmp",
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _hermes_serve(model_dir, *flags: str, env: dict | None = None):
    return _run([sys.executable, "-m", "sglang_hermes.launch_server", "--model-path", str(model_dir),
                 "--host", "127.0.0.1", "--port", "1", *flags], env=env)


def _refusal_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in (out.stdout + out.stderr).splitlines() if PREFIX in line]
    assert lines, f"no refusal line (exit {out.returncode}):\n{(out.stdout + out.stderr)[-3000:]}"
    return lines[-1]


REFUSED_FLAGS = [
    (["--tokenizer-worker-num", "2"], {}, "--tokenizer-worker-num 2"),
    (["--speculative-algorithm", "EAGLE"], {}, "--speculative-algorithm EAGLE"),
    (["--kv-cache-dtype", "fp8_e4m3"], {}, "--kv-cache-dtype fp8_e4m3"),
    (["--kv-cache-dtype", "nvfp4"], {}, "--kv-cache-dtype nvfp4"),
    (["--cuda-graph-backend-prefill", "breakable"], {}, "--cuda-graph-backend-prefill breakable"),
    (["--tp-size", "2"], {}, "--tp-size 2"),
    (["--pp-size", "2"], {}, "--pp-size 2"),
    (["--enable-dp-attention"], {}, "--enable-dp-attention"),
    (["--page-size", "16"], {}, "--page-size 16"),
    (["--attention-backend", "aiter"], {}, "--attention-backend aiter"),
    (["--enable-two-batch-overlap"], {}, "--enable-two-batch-overlap"),
    (["--disaggregation-mode", "prefill"], {}, "--disaggregation-mode prefill"),
    ([], {"SGLANG_USE_HND_KVCACHE": "1"}, "SGLANG_USE_HND_KVCACHE=1"),
]


@pytest.fixture(scope="module")
def refused_starts(qwen_dir) -> dict[str, concurrent.futures.Future]:
    """Every row's hermes-serve, started side by side: each spends its seconds importing SGLang's
    argument parser, so running them together halves the table's wall time on two cores."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    futures = {names: pool.submit(_hermes_serve, qwen_dir, *flags, env=env) for flags, env, names in REFUSED_FLAGS}
    yield futures
    pool.shutdown(wait=True)


@pytest.mark.parametrize("flags,env,names", REFUSED_FLAGS, ids=[r[2] for r in REFUSED_FLAGS])
def test_refused_flags_exit_before_sglang_starts(refused_starts, flags, env, names):
    out = refused_starts[names].result()
    assert out.returncode != 0
    line = _refusal_line(out)
    assert names in line and "supported:" in line
    assert "Load weight" not in out.stdout + out.stderr  # refused before SGLang loaded anything


def test_a_sequence_dependent_rope_scaling_is_refused_by_the_scheduler(qwen_dir, tmp_path):
    """Only the loaded model reveals this: the cache factory refuses it, the whole server exits. Dynamic NTK
    scaling changes the frequencies with the sequence length, so no stored key can be re-rotated exactly."""
    model = shutil.copytree(qwen_dir, tmp_path / "qwen-dynamic")
    config = json.loads((model / "config.json").read_text())
    config["text_config"]["rope_parameters"].update(rope_type="dynamic", factor=2.0)
    (model / "config.json").write_text(json.dumps(config))
    out = _hermes_serve(model, "--dtype", "float32")
    assert out.returncode != 0
    assert "RoPE scaling 'dynamic'" in _refusal_line(out)


def test_an_architecture_without_a_stream_layout_is_refused():
    """Checked in the scheduler like the row above (same code path); unit-level here, no tiny model of it."""
    from types import SimpleNamespace

    for model_type in STREAM_MODEL_TYPES:
        assert architecture_refusals(SimpleNamespace(model_type=model_type)) == []
    [reason] = architecture_refusals(SimpleNamespace(model_type="llava", architectures=["LlavaForConditionalGeneration"]))
    assert "'llava' (LlavaForConditionalGeneration)" in reason
    assert set(reason.split("supported: ")[1].split(", ")) == set(STREAM_MODEL_TYPES)


def test_register_refuses_an_untested_sglang_version():
    """SGLang logs and swallows an exception from a plugin's register(); the refusal must end the process."""
    script = ("import sglang; sglang.__version__ = '0.5.22'\n"
              "from sglang.srt.plugins import load_plugins\n"
              "load_plugins()\n"
              "print('served anyway')\n")
    out = _run([sys.executable, "-c", script])
    assert out.returncode != 0 and "served anyway" not in out.stdout
    line = _refusal_line(out)
    assert "SGLang 0.5.22" in line and f"supports SGLang {SUPPORTED_SGLANG} only" in line


def test_unpatched_hook_targets_names_what_sglang_skipped():
    def hermes_hook(result, *args):
        return result

    hermes_hook.__module__ = "sglang_hermes.runtime.example"

    @functools.wraps(json.loads)
    def wrapped(*args, **kwargs):
        return json.loads(*args, **kwargs)

    registry = {
        "json.dumps": [("after", hermes_hook, None)],  # resolvable, never wrapped
        "json.no_such_function": [("after", hermes_hook, None)],  # SGLang could not resolve it
        "json.loads": [("after", print, None)],  # another plugin's target: not ours to check
        "wrapped.target": [("after", hermes_hook, None)],
    }
    def resolve(target):
        return wrapped if target == "wrapped.target" else pkgutil.resolve_name(target)

    assert unpatched_hook_targets(registry, resolve) == ["json.dumps", "json.no_such_function"]
