"""How much the guidance mode changes what HERMES keeps: ``passes`` vs ``block`` on the same cache.

The HF reference streamer runs one stream on the tiny Qwen2.5-VL in ``passes`` mode; at every
compression both modes score the SAME cache (prefix + memory + chunk), the policy plans with each,
and the kept candidate sets are compared per layer (Jaccard |A∩B| / |A∪B|; the summary slot is not
a candidate). Also printed: the largest relative L1 difference of a layer's tier attention. The
stream then goes on with the ``passes`` plan, so later compressions start from the paper's memory.

    python bench/guidance_modes.py [--chunks 8] [--budget 40] [--model DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.policy import StreamView
from sglang_hermes.reference import ReferenceStreamer
from sglang_hermes.testing.tiny_models import build_tiny_qwen2_5_vl
from sglang_hermes.testing.video import synthetic_frames


class ComparingStreamer(ReferenceStreamer):
    """A passes-mode reference streamer that, before each compression, plans in both modes."""

    rows: list[dict]

    def _maybe_compress(self):
        if self.policy.compresses and self._n_candidates() > self.cfg.budget_tokens:
            self.rows.append(self._compare())
        return super()._maybe_compress()

    def _compare(self) -> dict:
        passes_cfg, keep, attention = self.cfg, {}, {}
        for mode in ("passes", "block"):
            self.cfg = passes_cfg.model_copy(update={"guidance": mode})
            attention[mode] = self._guidance_attention()
            view = StreamView(attention[mode], torch.stack(self.memory.positions),
                              torch.stack(self.memory.is_summary), torch.stack(self.memory.chunk),
                              memory_start=self.prefix_len)
            keep[mode] = self.policy.plan(view, reindex=False).keep
        self.cfg = passes_cfg
        jaccard = [_jaccard(a, b) for a, b in zip(keep["passes"], keep["block"])]
        rel_l1 = ((attention["passes"] - attention["block"]).abs().sum(-1) / attention["passes"].abs().sum(-1))
        return {"candidates": self._n_candidates(), "jaccard": jaccard, "max_rel_l1": float(rel_l1.max())}


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    sa, sb = set(a[a >= 0].tolist()), set(b[b >= 0].tolist())
    return len(sa & sb) / max(1, len(sa | sb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--frames", type=int, default=2, help="frames per chunk")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--model", help="a Qwen2.5-VL checkpoint (default: the tiny random one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_tiny_qwen2_5_vl(Path(tmp) / "qwen")
        ref = ComparingStreamer(model, HermesConfig(budget_tokens=args.budget, guidance="passes"))
        ref.rows = []
        frames = synthetic_frames(args.chunks * args.frames, size=336, seed=1)
        for i in range(args.chunks):
            ref.append(frames[i * args.frames:(i + 1) * args.frames])
    print(f"{'compression':>11} {'candidates':>10} {'mean Jaccard':>13} {'min':>6} {'layers equal':>13} "
          f"{'max rel L1':>11}")
    for k, row in enumerate(ref.rows, 1):
        j = row["jaccard"]
        print(f"{k:>11} {row['candidates']:>10} {sum(j) / len(j):>13.3f} {min(j):>6.3f} "
              f"{sum(x == 1.0 for x in j):>6}/{len(j):<6} {row['max_rel_l1']:>11.3f}")
    per_layer = torch.tensor([row["jaccard"] for row in ref.rows]).mean(0)
    print("mean Jaccard per layer over all compressions:", " ".join(f"{x:.2f}" for x in per_layer.tolist()))
    print(f"overall mean Jaccard: {float(per_layer.mean()):.3f}")


if __name__ == "__main__":
    main()
