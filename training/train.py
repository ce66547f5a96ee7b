"""Train the tiny shapes model on CPU, reproducibly: ``python -m training.train`` (one command).

Every example is a fresh clip of the synthetic benchmark's generator (training seeds start at
``TRAIN_SEED``; hermes-eval's held-out clips use other seeds), laid out as hermes-eval asks it
(``training.data``); the loss is on the answer only. Seeded end to end (clips, layouts, init, batches):
the same command gives the same weights on the same torch build. Progress goes to stderr (tqdm); the
checkpoint (safetensors, float32), the processor files and ``train_log.json`` (loss and answer accuracy
per logged step, wall and CPU seconds) go to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.data import FPS, Example, clip_examples, random_clip
from training.model import build_initial

TRAIN_SEED = 1000  # clip seeds 1000 + k; the benchmarks in docs/quality.md use seeds < 1000
DEFAULT_OUT = "models/tiny-shapes-qwen2.5-vl"
CHUNKS = (2, 4, 8, 16)  # chunk sizes a stream is appended in (hermes-eval's --chunk)
RECENT = (2, 4, 8)  # frames of the stateless recent-frames layout


class ExampleSource:
    """An endless, seeded shuffle of examples from fresh clips (a pool, so a batch mixes clips)."""

    def __init__(self, seed: int, durations: tuple[int, int], recent_share: float, pool: int = 96):
        self.rng = np.random.default_rng(seed)
        self.seed, self.durations, self.recent_share, self.pool_size = seed, durations, recent_share, pool
        self.clips = 0
        self.pool: list[Example] = []

    def _refill(self) -> None:
        while len(self.pool) < self.pool_size:
            clip = random_clip(TRAIN_SEED + self.seed, self.clips, self.rng, self.durations)
            self.clips += 1
            recent = int(self.rng.choice(RECENT)) if self.rng.random() < self.recent_share else None
            for ex in clip_examples(clip, self.rng, chunk=int(self.rng.choice(CHUNKS)), recent=recent):
                self.pool.append(ex)

    def batch(self, n: int) -> list[Example]:
        self._refill()
        picks = sorted(self.rng.choice(len(self.pool), size=n, replace=False).tolist(), reverse=True)
        return [self.pool.pop(i) for i in picks]


def encode(processor, examples: list[Example]) -> tuple[dict, torch.Tensor]:
    """Processor inputs for a batch and the labels (-100 except on each example's answer tokens)."""
    from transformers.video_utils import VideoMetadata

    videos = [v for ex in examples for v in ex.videos]
    images = [im for ex in examples for im in ex.images]
    kwargs = {}
    if videos:
        kwargs.update(videos=videos, do_sample_frames=False,
                      video_metadata=[VideoMetadata(total_num_frames=len(v), fps=FPS) for v in videos])
    if images:
        kwargs.update(images=images)
    inputs = processor(text=[ex.text for ex in examples], padding=True, return_tensors="pt", **kwargs)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    labels = torch.full_like(ids, -100)
    tok = processor.tokenizer
    for i, ex in enumerate(examples):
        answer = tok(ex.answer, add_special_tokens=False)["input_ids"]
        end = int(mask[i].nonzero().max()) + 1  # right padding
        assert ids[i, end - len(answer):end].tolist() == answer, "the answer must tokenize on its own"
        labels[i, end - len(answer):end] = ids[i, end - len(answer):end]
    return dict(inputs), labels


class Batches(torch.utils.data.IterableDataset):
    """Encoded batches, made in a DataLoader worker so drawing frames overlaps the model's step."""

    def __init__(self, model_dir: Path, args: argparse.Namespace):
        self.model_dir, self.args = model_dir, args

    def __iter__(self):
        from transformers import AutoProcessor

        a = self.args
        torch.set_num_threads(1)
        processor = AutoProcessor.from_pretrained(self.model_dir)
        source = ExampleSource(a.seed, (a.min_seconds, a.max_seconds), a.recent_share)
        while True:
            examples = source.batch(a.batch)
            inputs, labels = encode(processor, examples)
            yield inputs, labels, [(ex.split, ex.task) for ex in examples], source.clips


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def train(args: argparse.Namespace) -> dict:
    from transformers import AutoModelForImageTextToText

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="tiny-shapes-"))
    build_initial(work, seed=args.seed)
    model = AutoModelForImageTextToText.from_pretrained(work, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0}],
                            lr=args.lr, betas=(0.9, 0.98))
    batches = iter(torch.utils.data.DataLoader(Batches(work, args), batch_size=None, num_workers=1,
                                               prefetch_factor=4))
    log, window, clips = [], [], 0
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def summary(done: int) -> dict:
        return dict(steps=done, planned_steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                    clips=clips, seconds=[args.min_seconds, args.max_seconds], recent_share=args.recent_share,
                    threads=args.threads, wall_s=round(time.perf_counter() - wall0, 1),
                    cpu_s=round(time.process_time() - cpu0, 1), torch=torch.__version__, log=log)

    bar = tqdm(range(args.steps), unit="step", mininterval=10)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        inputs, labels, kinds, clips = next(batches)
        logits = model(**inputs, use_cache=False).logits[:, :-1]
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # whole answer right, token by token under teacher forcing
            hit = ((logits.argmax(-1) == target) | (target == -100)).all(dim=1).float()
        window += [(loss.item(), split, task, h) for (split, task), h in zip(kinds, hit.tolist())]
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            l = float(np.mean([w[0] for w in window]))
            a = float(np.mean([w[3] for w in window]))
            by = share_right(window, 1, ("perception", "memory", "order"))
            tasks = share_right(window, 2, sorted({w[2] for w in window}))
            window = []
            log.append(dict(step=step + 1, loss=round(l, 4), answer_acc=round(a, 4), **by, tasks=tasks, clips=clips,
                            wall_s=round(time.perf_counter() - wall0, 1), cpu_s=round(time.process_time() - cpu0, 1)))
            bar.set_postfix(loss=f"{l:.3f}", acc=f"{a:.2f}")
            tqdm.write(json.dumps(log[-1]))
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            save(model, work, out, summary(step + 1))  # a run cut short still leaves a checkpoint
    model.eval()
    final = summary(args.steps)
    save(model, work, out, final)
    shutil.rmtree(work)
    return final


def share_right(window: list[tuple], field: int, groups) -> dict[str, float]:
    """Share of whole answers right per group (split or task: ``field`` of the window's rows), for the
    groups the window holds."""
    return {g: round(float(np.mean([w[3] for w in window if w[field] == g])), 3)
            for g in groups if any(w[field] == g for w in window)}


def save(model, work: Path, out: Path, summary: dict) -> None:
    """The trained weights next to the initial checkpoint's config and processor files (whose config
    carries the top-level fields SGLang reads; save_pretrained would drop them)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(Path(tmp) / "model.safetensors", work / "model.safetensors")
    out.mkdir(parents=True, exist_ok=True)
    for f in work.iterdir():
        shutil.copy(f, out / f.name)
    (out / "train_log.json").write_text(json.dumps(summary, indent=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--min-seconds", type=int, default=12, help="shortest training clip")
    p.add_argument("--max-seconds", type=int, default=32, help="longest training clip")
    p.add_argument("--recent-share", type=float, default=0.15, help="share of clips in the recent-frames layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (2 threads on a loaded machine spin-wait: 10x the CPU)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=500, help="also write the checkpoint every N steps (0: "
                   "only at the end)")
    return p


def main(argv: list[str] | None = None) -> int:
    summary = train(build_parser().parse_args(argv))
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
