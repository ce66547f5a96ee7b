"""Does the vision tower still see colours? A linear probe on its merged tokens, untrained vs trained.

The trained model answers counts but not colours (docs/quality.md). This tells the two possible reasons
apart: either the frames' colours never reach the language model (the tower loses them), or they do and
the language model has not learnt to bind a colour to the shape asked about. It fits a logistic
regression from a frame's two top merged tokens (the lanes of the circle and the square) to the circle's
colour (or "absent") on held-out clips, for the untrained starting checkpoint and for the shipped
weights, and prints both accuracies next to the majority class.

    python -m training.probe            # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from clients.eval.synth import PALETTE
from training.data import eval_frames, random_clip
from training.model import MODEL_DIR, build_initial

PROBE_SEED = 2000  # clips the training never drew (training seeds are 1000 + k, k < ~20,000 clips)


def top_token_features(model_dir: str, clips: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, 2 * hidden], labels [n]): every third frame of ``clips`` clips, label = the circle's
    colour index or len(PALETTE) when it is not on screen."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    names, rng = list(PALETTE), np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(clips):
        clip = random_clip(PROBE_SEED + seed, i, rng, (12, 20))
        for t, frame in eval_frames(clip)[::3]:
            pixels = processor.image_processor(images=[frame], return_tensors="pt")
            with torch.no_grad():
                tokens = model.model.visual(pixels["pixel_values"], grid_thw=pixels["image_grid_thw"])
            tokens = getattr(tokens, "pooler_output", tokens)
            xs.append(tokens[:2].reshape(-1).numpy())  # the 2x2 merged grid's top row: lanes 0-1
            colour = clip.scene(t).get("circle")
            ys.append(names.index(colour) if colour else len(names))
    return np.array(xs), np.array(ys)


def probe_accuracy(x: np.ndarray, y: np.ndarray, classes: int, seed: int = 0) -> tuple[float, float, int]:
    """(held-out accuracy of a multinomial logistic regression on standardised features with L2, the
    majority class's share of the held-out labels, their number): the first 3/4 train, the rest test."""
    torch.manual_seed(seed)
    n = len(x) * 3 // 4
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    mean, std = xt[:n].mean(0), xt[:n].std(0) + 1e-6
    xt = (xt - mean) / std
    linear = torch.nn.Linear(xt.shape[1], classes)
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(500):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(linear(xt[:n]), yt[:n]).backward()
        opt.step()
    with torch.no_grad():
        accuracy = float((linear(xt[n:]).argmax(-1) == yt[n:]).float().mean())
    return accuracy, np.bincount(y[n:], minlength=classes).max() / len(y[n:]), len(y) - n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.probe", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(MODEL_DIR))
    p.add_argument("--clips", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as untrained:
        build_initial(untrained, seed=0)  # the training's starting point (train.py builds it with seed 0)
        rows = [("untrained (training's start)", untrained), ("trained", args.model)]
        classes = len(PALETTE) + 1
        print(f"linear probe: the circle's colour (6 colours or absent) from the vision tower's top tokens, "
              f"{args.clips} held-out clips")
        for name, path in rows:
            accuracy, majority, tested = probe_accuracy(*top_token_features(path, args.clips, args.seed), classes)
            print(f"  {name:<30} {100 * accuracy:5.1f}%   (majority class {100 * majority:.1f}%, "
                  f"{tested} test frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
