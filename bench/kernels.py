"""Kernel benchmark: bytes moved and FLOPs per call at Qwen2.5-VL-7B shapes, and on a GPU the time
and achieved bandwidth against the device's own copy bandwidth, measured side by side.

    python bench/kernels.py            # realistic shapes (times only on CUDA)
    python bench/kernels.py --smoke    # tiny shapes, correctness under the interpreter on CPU
"""

from __future__ import annotations

import argparse
import os
import sys


def shapes(smoke: bool) -> dict:
    if smoke:
        return dict(layers=3, kv_heads=2, heads=4, head_dim=16, budget=48, chunk=40, guidance=6, slots=256)
    # Qwen2.5-VL-7B: 28 layers, 28 query / 4 kv heads, head_dim 128; budget 6K; a 16-frame chunk at
    # ~200 tokens a frame; ~60 guidance tokens (three prompts).
    return dict(layers=28, kv_heads=4, heads=28, head_dim=128, budget=6144, chunk=3200, guidance=60, slots=16384)


def traffic(s: dict, elem: int) -> dict:
    """Bytes each kernel must move at minimum, and what ours moves, plus FLOPs."""
    L, H, Hq, D, M, T, G = s["layers"], s["kv_heads"], s["heads"], s["head_dim"], s["budget"], s["chunk"], s["guidance"]
    N = M + T
    row = H * D * elem
    return {
        # K read twice (two softmax passes) for one layer; Q re-read per block from L2 (not counted).
        "attention_mass": dict(min_bytes=N * row, bytes=2 * N * row, flops=2 * 2 * G * Hq * N * D),
        "mix_smooth": dict(min_bytes=2 * L * N * 4, bytes=2 * L * N * 4, flops=12 * L * N),
        "rerotate": dict(min_bytes=2 * M * row, bytes=2 * M * row, flops=6 * M * H * D),
        # All layers: read kept K/V + folded K/V (deep layers), write M slots of K/V.
        "compact": dict(min_bytes=2 * L * (N + M) * row, bytes=2 * L * (N + M) * row, flops=6 * L * N * H * D),
    }


def inputs(s: dict, device: str, dtype):
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    L, H, Hq, D, M, T, G = s["layers"], s["kv_heads"], s["heads"], s["head_dim"], s["budget"], s["chunk"], s["guidance"]
    N = M + T
    S = max(s["slots"], N + 2)
    kb = [torch.randn(S, H, D, generator=g, device=device).to(dtype) for _ in range(L)]
    vb = [torch.randn(S, H, D, generator=g, device=device).to(dtype) for _ in range(L)]
    row = torch.randperm(S - 1, generator=g, device=device)[:N] + 1
    keep = torch.sort(torch.randperm(N, generator=g, device=device)[:M]).values
    src = row[keep].expand(L, M).clone()
    src[-(L * 3) // 10:, -1] = -1  # deep layers carry a summary
    evicted = torch.ones(N, dtype=torch.bool, device=device)
    evicted[keep] = False
    fold = row[evicted].expand(L, -1).clone()
    return dict(
        q=torch.randn(G, Hq, D, generator=g, device=device).to(dtype), kb=kb, vb=vb, row=row,
        seg=torch.randint(0, 3, (G,), generator=g, device=device), attn=torch.rand(L, N, generator=g, device=device),
        a=torch.rand(L, device=device), k=torch.rand(L, device=device) * 20, lam=torch.rand(L, device=device),
        src=src, dst=row[:M].clone(), rot=torch.randint(-100, 100, (L, M, 3), device=device),
        fold=fold, fold_delta=torch.randint(-100, 100, (L, fold.shape[1], 3), device=device),
    )


def run(smoke: bool) -> None:
    import torch

    from triton_kernels import attention_mass as am
    from triton_kernels import compaction as co
    from triton_kernels import mix_smooth as ms
    from triton_kernels import rerotate as rr

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    s = shapes(smoke)
    x = inputs(s, device, dtype)
    section = [s["head_dim"] // 8, 3 * s["head_dim"] // 16, 3 * s["head_dim"] // 16]
    from sglang_hermes.policy.rope import Rope

    kw = Rope.uniform(s["head_dim"], 1e6, mrope_section=section).kernel_args(device, layer=0)
    calls = {
        "attention_mass": (lambda: am.attention_mass_triton(x["q"], x["kb"][0], x["row"], x["seg"], 3, 0.088),
                           lambda: am.attention_mass_reference(x["q"], x["kb"][0], x["row"], x["seg"], 3, 0.088)),
        "mix_smooth": (lambda: ms.mix_smooth_triton(x["attn"], x["a"], x["k"], x["lam"]),
                       lambda: ms.mix_smooth_reference(x["attn"], x["a"], x["k"], x["lam"])),
    }
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu (no GPU present: correctness only, interpreter)'}")
    print(f"shapes: {s}")
    t = traffic(s, torch.finfo(dtype).bits // 8)
    for name, (tri, ref) in calls.items():
        err = (tri().float() - ref().float()).abs().max().item()
        print(f"{name:15s} max|triton - reference| = {err:.2e}")
    for name, (tri, ref) in {
        "rerotate": (lambda b: rr.rerotate_triton(b[0], x["dst"], x["rot"][0], **kw),
                     lambda b: rr.rerotate_reference(b[0], x["dst"], x["rot"][0], **kw)),
        "compact": (lambda b: co.compact_triton(b, [v.clone() for v in x["vb"]], x["src"], x["dst"], x["rot"],
                                                x["fold"], x["fold_delta"], **kw),
                    lambda b: co.compact_reference(b, [v.clone() for v in x["vb"]], x["src"], x["dst"], x["rot"],
                                                   x["fold"], x["fold_delta"], **kw)),
    }.items():
        a, b = [k.clone() for k in x["kb"]], [k.clone() for k in x["kb"]]
        tri(a), ref(b)
        print(f"{name:15s} max|triton - reference| = {max((p.float() - q.float()).abs().max().item() for p, q in zip(a, b)):.2e}")
    print(f"\n{'kernel':15s} {'bytes':>12s} {'min bytes':>12s} {'ratio':>6s} {'GFLOP':>8s}" + ("  time_ms  GB/s  copy_GB/s" if cuda else ""))
    if cuda:
        import triton.testing

        ref_buf = x["kb"][0]
        copy_ms = triton.testing.do_bench(lambda: ref_buf.clone())
        copy_bw = 2 * ref_buf.numel() * ref_buf.element_size() / copy_ms / 1e6
        timed = {"attention_mass": calls["attention_mass"][0], "mix_smooth": calls["mix_smooth"][0],
                 "rerotate": lambda: rr.rerotate_triton(x["kb"][0], x["dst"], x["rot"][0], **kw),
                 "compact": lambda: co.compact_triton(x["kb"], x["vb"], x["src"], x["dst"], x["rot"], x["fold"],
                                                      x["fold_delta"], **kw)}
    for name, tr in t.items():
        line = f"{name:15s} {tr['bytes']:12d} {tr['min_bytes']:12d} {tr['bytes'] / tr['min_bytes']:6.2f} {tr['flops'] / 1e9:8.3f}"
        if cuda:
            ms_ = triton.testing.do_bench(timed[name])
            line += f"  {ms_:7.3f} {tr['bytes'] / ms_ / 1e6:6.0f} {copy_bw:6.0f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes; on CPU always used")
    args = parser.parse_args()
    import torch

    smoke = args.smoke or not torch.cuda.is_available()
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        # Triton runs on CPU only in interpreter mode, which must be set before triton is imported.
        os.environ["TRITON_INTERPRET"] = "1"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    run(smoke)


if __name__ == "__main__":
    main()
