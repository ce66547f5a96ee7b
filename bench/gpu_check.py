"""The checks of bench/gpu_check.sh that need Python: what the CPU suite cannot show about a GPU.

    python bench/gpu_check.py kernels [--model DIR]          # Triton == torch reference on real KV
    python bench/gpu_check.py stream  [--model DIR] [-- extra hermes-serve flags]

``kernels`` runs the model once with transformers to get real keys and values (not random ones:
real KV has the outliers and RoPE structure the kernels meet in service), then runs every hermes
kernel on CUDA against its float64 torch reference on copies of them, with the in-place overlapping
compaction the runtime does. ``stream`` starts ``hermes-serve`` with SGLang's defaults on the GPU
(overlap scheduler, decode CUDA graphs) and checks that a stream without compression gives the
same greedy answer as one stateless request holding the same chunks and question.

Each prints one line per check, ``PASS``/``FAIL``, with the numbers; the exit status is non-zero on
any FAIL. Without ``--model`` the tiny random-weight Qwen2.5-VL of the tests is built and used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kernels as kernel_bench  # noqa: E402  (bench/kernels.py: the overlapping in-place plan)

TOL = {"torch.bfloat16": 2e-2 * 4, "torch.float16": 2e-3 * 4, "torch.float32": 1e-5 * 4}
QUESTION = "What moves in the video?"


def _model(path: str | None) -> Path:
    if path:
        return Path(path)
    from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(Path(tempfile.mkdtemp(prefix="hermes-gpu-check-")))


def _line(ok: bool, name: str, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return ok


def real_kv(model_dir: Path, tokens: int):
    """Per-layer K and V [tokens, kv_heads, head_dim] in bf16 on CUDA from one HF forward of real text."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    text = " ".join(["A person walks across the room, picks up a red cup and puts it on the table."] * 64)
    ids = tok(text, return_tensors="pt").input_ids[:, :tokens].cuda()
    with torch.no_grad():
        cache = model(input_ids=ids, use_cache=True).past_key_values
    layers = getattr(cache, "layers", None)
    keys = [l.keys for l in layers] if layers is not None else list(cache.key_cache)
    values = [l.values for l in layers] if layers is not None else list(cache.value_cache)
    return ([k[0].transpose(0, 1).contiguous() for k in keys], [v[0].transpose(0, 1).contiguous() for v in values],
            model.config)


def check_kernels(model_dir: Path) -> bool:
    import torch

    from sglang_hermes.model_facts import ModelFacts
    from triton_kernels import attention_mass as am
    from triton_kernels import compaction as co
    from triton_kernels import rerotate as rr

    kb, vb, config = real_kv(model_dir, tokens=512)
    facts = ModelFacts.from_hf_config(config)
    S, H, D = kb[0].shape
    M = S // 2 - 8
    shape = dict(layers=len(kb), kv_heads=H, heads=H, head_dim=D, budget=M, chunk=S // 2 - 16, guidance=12,
                 slots=S)
    x = kernel_bench.inputs(shape, "cuda", torch.bfloat16)
    axes = facts.axes
    x["rot"], x["fold_delta"] = x["rot"][..., :axes].contiguous(), x["fold_delta"][..., :axes].contiguous()
    rope = facts.rope.kernel_args("cuda")  # every layer's own frequencies
    tol = TOL[str(kb[0].dtype)]
    ok = True

    a = ([b.clone() for b in kb], [b.clone() for b in vb])
    b = ([t.clone() for t in kb], [t.clone() for t in vb])
    args = (x["src"], x["dst"], x["rot"], x["fold"], x["fold_delta"])
    co.compact_triton(*a, *args, **rope)
    co.compact_reference(*b, *args, **rope)
    torch.cuda.synchronize()
    err = max((p.float() - q.float()).abs().max().item() for p, q in zip(a[0] + a[1], b[0] + b[1]))
    ok &= _line(err <= tol, "compaction (in place, overlapping, summary) == reference on real KV",
                f"max |diff| {err:.2e} (tol {tol:.0e}), {len(kb)} layers x {S} slots x {H} heads x {D}")

    k1, k2 = kb[0].clone(), kb[0].clone()
    slots = x["row"][:M]
    delta = x["rot"][0]
    rr.rerotate_triton(k1, slots, delta, **facts.rope.kernel_args("cuda", layer=0))
    rr.rerotate_reference(k2, slots, delta, **facts.rope.kernel_args("cuda", layer=0))
    err = (k1.float() - k2.float()).abs().max().item()
    ok &= _line(err <= tol, "re-rotation == reference on real keys", f"max |diff| {err:.2e} (tol {tol:.0e})")

    q = kb[-1][-12:]  # real keys of the last tokens stand in for guidance queries (same head count)
    row = x["row"]
    got = am.attention_mass_triton(q, kb[-1], row, x["seg"], 3, D ** -0.5)
    want = am.attention_mass_reference(q, kb[-1], row, x["seg"], 3, D ** -0.5)
    err = (got - want).abs().max().item()
    ok &= _line(err <= 1e-3, "attention mass == reference on real keys", f"max |diff| {err:.2e} (tol 1e-03)")
    return ok


def check_stream(model_dir: Path, extra: list[str]) -> bool:
    import httpx
    import openai

    from sglang_hermes.config import HermesConfig
    from sglang_hermes.media import data_url, encode_mp4
    from sglang_hermes.testing.native_stream import NativeStream
    from sglang_hermes.testing.server import HermesServer
    from sglang_hermes.testing.video import synthetic_frames

    frames = synthetic_frames(12, size=336, seed=11)
    video = [frames[i:i + 4] for i in range(0, 12, 4)]
    env = {"SGLANG_HERMES_EXPOSE_POSITIONS": "1"}
    with HermesServer(model_dir, extra_args=["--dtype", "bfloat16", *extra], env=env,
                      log_path="/tmp/hermes-gpu-check-server.log") as server:
        info = httpx.get(f"{server.base_url}/server_info", timeout=60).json()
        _line(True, "server started with SGLang's GPU defaults",
              f"{server.startup_seconds:.0f} s, overlap {'off' if info.get('disable_overlap_schedule') else 'on'}, "
              f"decode CUDA graphs {'off' if info.get('disable_cuda_graph') else 'on'}, "
              f"attention {info.get('attention_backend')}")
        stream = NativeStream(server.base_url, model_dir, HermesConfig(budget_tokens=100_000)).open()
        stream.append(video[0])
        chunk_tokens = _state(server)[stream.session_id]["tokens_seen"]
        for chunk in video[1:]:
            stream.append(chunk)
        text, logprobs, _ = stream.ask(QUESTION, 12)
        stream.close()
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
        r = client.chat.completions.create(
            model="default", max_tokens=12, temperature=0, logprobs=True,
            messages=[{"role": "user", "content": [
                *[{"type": "video_url", "video_url": {"url": data_url("video/mp4", encode_mp4(c, fps=2.0))}}
                  for c in video],
                {"type": "text", "text": QUESTION}]}])
        want = [t.logprob for t in r.choices[0].logprobs.content]
        err = max((abs(a - b) for a, b in zip(logprobs, want)), default=float("inf"))
        ok = _line(text == r.choices[0].message.content and len(logprobs) == len(want),
                   "stream (no compression) == one stateless request",
                   f"same greedy answer: {text == r.choices[0].message.content}, max |d logprob| {err:.2e} "
                   f"over {len(want)} tokens")

        # A compressing stream (a budget of one chunk: every later append compresses). Its kept positions
        # and answer must not depend on the scheduler mode: gpu_check.sh compares this digest between the
        # overlap-on and overlap-off runs (compaction must be ordered with the forwards in both).
        stream = NativeStream(server.base_url, model_dir, HermesConfig(budget_tokens=chunk_tokens)).open()
        for chunk in video:
            stream.append(chunk)
        kept = _state(server)[stream.session_id]
        text, _, _ = stream.ask(QUESTION, 12)
        stream.close()
        digest = hashlib.sha256(json.dumps([kept["positions"], text]).encode()).hexdigest()[:16]
        ok &= _line(kept["compressions"] > 0, "compressing stream", f"{kept['compressions']} compressions, "
                    f"digest {digest} (kept positions + answer)")
        return ok


def _state(server) -> dict:
    import httpx

    return httpx.get(f"{server.base_url}/server_info", timeout=60).json()["internal_states"][0]["hermes"]["streams"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("check", choices=["kernels", "stream"])
    p.add_argument("--model", help="a Qwen2.5-VL checkpoint (default: the tiny test model)")
    p.add_argument("extra", nargs="*", help="after --: extra hermes-serve flags (stream)")
    a = p.parse_args()
    model = _model(a.model)
    ok = check_kernels(model) if a.check == "kernels" else check_stream(model, a.extra)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
