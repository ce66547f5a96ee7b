"""``python -m training.train`` runs end to end and is reproducible: the same seed gives the same weights
byte for byte, another seed does not; the log records what docs/quality.md reports (loss, accuracy per
split and per task, wall and CPU seconds). Two steps of two examples, so it takes seconds."""

from __future__ import annotations

import json

from training.train import main


def _train(out, seed: int) -> bytes:
    assert main(["--out", str(out), "--steps", "2", "--batch", "2", "--log-every", "1", "--seed", str(seed),
                 "--warmup", "1", "--save-every", "0"]) == 0
    return (out / "model.safetensors").read_bytes()


def test_training_is_seeded_end_to_end(tmp_path):
    first, again, other = (_train(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert first == again and first != other
    log = json.loads((tmp_path / "a" / "train_log.json").read_text())
    assert log["steps"] == log["planned_steps"] == 2 and [e["step"] for e in log["log"]] == [1, 2]
    assert all(e["tasks"] and set(e["tasks"].values()) <= {0.0, 0.5, 1.0} for e in log["log"])
    assert (tmp_path / "a" / "config.json").exists() and (tmp_path / "a" / "tokenizer.json").exists()
