"""``training.probe``'s two halves: the features are the vision tower's top merged tokens of real frames
with the circle's colour as label, and the probe's accuracy tells readable labels from unreadable ones."""

from __future__ import annotations

import numpy as np

from clients.eval.synth import PALETTE
from training.model import MODEL_DIR
from training.probe import probe_accuracy, top_token_features


def test_features_are_two_merged_tokens_per_frame_with_the_circles_colour():
    x, y = top_token_features(str(MODEL_DIR), clips=2, seed=0)
    assert x.ndim == 2 and x.shape[1] == 2 * 64 and len(x) == len(y) > 4  # hidden 64: two merged tokens
    assert set(y.tolist()) <= set(range(len(PALETTE) + 1))
    assert np.isfinite(x).all() and x.std(axis=0).max() > 0  # the frames differ, so must the tokens


def test_probe_reads_a_linear_label_and_not_a_random_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, size=400)
    readable = np.eye(7)[y] @ rng.normal(size=(7, 32)) + 0.1 * rng.normal(size=(400, 32))
    accuracy, majority, tested = probe_accuracy(readable, y, 7)
    assert accuracy > 0.95 and tested == 100 and majority < 0.35
    assert probe_accuracy(rng.normal(size=(400, 32)), y, 7)[0] < 0.35
