"""How much of the newest chunk each layer tier keeps: hermes vs recent_hermes vs fifo, same budget.

HF reference streamer on the tiny random-weight Qwen2.5-VL (CPU, float32): 16-frame chunks (112x112,
130 tokens with the vision markers), budget M = 192, recent_hermes with its default window W = M/4.
After every compression: the share of the newest chunk's tokens each tier (shallow / middle / deep
layers) holds, and how many of its M slots a layer gives to older chunks. Then the question's first
answer-token logits against those of a `full` stream that kept everything (max |dlogit|, KL): a
distance from the uncompressed answer, not a quality measurement (random weights: no right answer).

    python bench/newest_chunk_kept.py [--chunks 6] [--budget 192]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))

from sglang_hermes.config import HermesConfig  # noqa: E402
from sglang_hermes.layout import question_text  # noqa: E402
from sglang_hermes.reference import ReferenceStreamer  # noqa: E402
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl  # noqa: E402
from sglang_hermes.testing.video import synthetic_frames  # noqa: E402

QUESTION = "Which shape moves?"
POLICIES = ("hermes", "recent_hermes", "fifo")


def question_logits(s: ReferenceStreamer) -> torch.Tensor:
    memory, clock = s.cache_len, s.clock
    logits, _ = s._prefill_text(question_text(QUESTION))
    s.cache.crop(memory)
    s.clock = clock
    return logits.double()


def run(model: Path, cfg: HermesConfig, chunks: list, sizes: list[int]) -> tuple[dict, torch.Tensor]:
    """Per tier: mean share of the newest chunk kept and mean older-chunk tokens per layer; the logits."""
    s = ReferenceStreamer(model, cfg)
    share = {t: [] for t in ("shallow", "middle", "deep")}
    older = {t: [] for t in share}
    for k, frames in enumerate(chunks):
        if s.append(frames) is None:
            continue
        for l, tier in enumerate(s.tiers):
            chunk = s.memory.chunk[l][~s.memory.is_summary[l]]
            share[tier.value].append(int((chunk == k).sum()) / sizes[k])
            older[tier.value].append(int((chunk < k).sum()))
    stats = {t: (sum(v) / len(v), sum(older[t]) / len(older[t])) for t, v in share.items()}
    return stats, question_logits(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--frames", type=int, default=16, help="frames per chunk")
    ap.add_argument("--budget", type=int, default=192)
    args = ap.parse_args()
    frames = synthetic_frames(args.chunks * args.frames, seed=3)
    chunks = [frames[i:i + args.frames] for i in range(0, len(frames), args.frames)]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_qwen2_5_vl(Path(tmp) / "qwen")
        full = ReferenceStreamer(model, HermesConfig(policy="full", budget_tokens=10**6))
        sizes = []
        for c in chunks:
            before = full._n_candidates()
            full.append(c)
            sizes.append(full._n_candidates() - before)
        base = question_logits(full)
        p0 = torch.log_softmax(base, -1)
        cfg = HermesConfig(policy="recent_hermes", budget_tokens=args.budget)
        print(f"{args.chunks} chunks of {args.frames} frames ({sizes[0]} tokens each), budget "
              f"{args.budget}, recent_hermes window {cfg.recent_window}")
        print(f"{'policy':<14} {'newest chunk kept: shallow / middle / deep':>44} "
              f"{'older tokens per layer: shallow / middle / deep':>49} {'max |dlogit|':>12} {'KL vs full':>10}")
        for policy in POLICIES:
            stats, logits = run(model, HermesConfig(policy=policy, budget_tokens=args.budget), chunks, sizes)
            p1 = torch.log_softmax(logits, -1)
            kl = float((p0.exp() * (p0 - p1)).sum())
            kept = " / ".join(f"{100 * stats[t][0]:5.1f}%" for t in ("shallow", "middle", "deep"))
            old = " / ".join(f"{stats[t][1]:6.1f}" for t in ("shallow", "middle", "deep"))
            print(f"{policy:<14} {kept:>44} {old:>49} {float((logits - base).abs().max()):>12.3f} {kl:>10.4f}")


if __name__ == "__main__":
    main()
