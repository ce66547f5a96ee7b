"""How much eager M-RoPE re-indexing moves a question's logits, for four re-indexing schemes side by side.

HF reference streamer on the tiny random-weight Qwen2.5-VL (CPU, float32): a lazy HERMES stream of
16-frame chunks (112x112, 130 tokens per chunk with the vision markers), budget M = 192. The memory is
then re-indexed four ways, each key re-rotated exactly to its new position, and the question's first
answer-token logits are compared with those of the memory as it was (same tokens, original positions):
  per_chunk   this project: one offset per chunk, gaps between chunks closed (policy/positions.py)
  per_frame   the project's earlier scheme: one offset per group of equal t (frames pulled apart)
  per_axis    the authors' released code: dense ranks of each axis' values, axes independently
  uniform     one offset for the whole memory (only the gap before it closes)
No scheme is exact (the distances between the prefix and the memory change); the question is how far
each moves the model. `span` is the positions a layer's memory covers (largest over layers).

    python bench/reindex_logits.py [--chunks 6] [--budget 192]
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
from sglang_hermes.policy.positions import contiguous  # noqa: E402
from sglang_hermes.policy.rope import rotate_by_delta  # noqa: E402
from sglang_hermes.reference import ReferenceStreamer  # noqa: E402
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl  # noqa: E402
from sglang_hermes.testing.video import synthetic_frames  # noqa: E402

QUESTION = "Which shape moves?"


def per_frame(pos: torch.Tensor, chunk: torch.Tensor, start: int) -> torch.Tensor:
    """The earlier scheme: each run of equal t moved on its own so it starts after the previous one."""
    return contiguous(pos, pos[:, 0], start)


def per_axis(pos: torch.Tensor, chunk: torch.Tensor, start: int) -> torch.Tensor:
    """The authors' scheme: every axis replaced by the dense rank of its value, plus the prefix length."""
    return torch.stack([torch.unique(pos[:, a], return_inverse=True)[1] + start for a in range(pos.shape[1])], 1)


def uniform(pos: torch.Tensor, chunk: torch.Tensor, start: int) -> torch.Tensor:
    return pos + (start - int(pos.min()))


SCHEMES = {"per_chunk": contiguous, "per_frame": per_frame, "per_axis": per_axis, "uniform": uniform}


def question_logits(s: ReferenceStreamer, clock: int) -> torch.Tensor:
    memory, saved = s.cache_len, s.clock
    s.clock = clock
    logits, _ = s._prefill_text(question_text(QUESTION))
    s.cache.crop(memory)
    s.clock = saved
    return logits.double()


def reindexed_logits(s: ReferenceStreamer, scheme) -> tuple[torch.Tensor, int]:
    """Question logits with every layer's memory moved by `scheme`; the cache is restored after."""
    P = s.prefix_len
    saved = [layer.keys for layer in s.cache.layers]
    top, span = 0, 0
    for l, layer in enumerate(s.cache.layers):
        old = s.memory.positions[l]
        new = scheme(old, s.memory.chunk[l], P)
        k = layer.keys[0].transpose(0, 1)
        moved = rotate_by_delta(k[P:], new - old, s.rope, l)
        layer.keys = torch.cat([k[:P], moved]).transpose(0, 1)[None].contiguous()
        top, span = max(top, int(new.max())), max(span, int(new.max() - new.min()) + 1)
    logits = question_logits(s, top + 1)
    for layer, keys in zip(s.cache.layers, saved):
        layer.keys = keys
    return logits, span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--frames", type=int, default=16, help="frames per chunk")
    ap.add_argument("--budget", type=int, default=192)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = ReferenceStreamer(build_tiny_qwen2_5_vl(Path(tmp) / "qwen"), HermesConfig(budget_tokens=args.budget))
        frames = synthetic_frames(args.chunks * args.frames, seed=3)
        for i in range(0, len(frames), args.frames):
            s.append(frames[i:i + args.frames])
        base = question_logits(s, s.clock)
        spans = [int(p.max() - p.min()) + 1 for p in s.memory.positions]
        print(f"{args.chunks} chunks of {args.frames} frames, budget {args.budget}, {s.compressions} compressions; "
              f"memory span before re-indexing {max(spans)} positions")
        print(f"{'scheme':<10} {'max |dlogit|':>12} {'KL(before||after)':>18} {'top-1 same':>10} {'span':>6}")
        p0 = torch.log_softmax(base, -1)
        for name, scheme in SCHEMES.items():
            logits, span = reindexed_logits(s, scheme)
            p1 = torch.log_softmax(logits, -1)
            kl = float((p0.exp() * (p0 - p1)).sum())
            same = int(logits.argmax()) == int(base.argmax())
            print(f"{name:<10} {float((logits - base).abs().max()):>12.3f} {kl:>18.4f} {str(same):>10} {span:>6}")


if __name__ == "__main__":
    main()
