"""HERMES on plain HF transformers, one stream at a time: the oracle the SGLang runtime is tested
against, and the baseline an eval harness can run with real weights.

Faithful to the paper where it matters: chunks are prefilled onto the KV cache; after each chunk the
guidance prompts (local / global / mixed) are run against the cache to read their attention over the
stream, then dropped; if a layer holds more than M candidate tokens the policy's plan is executed on
the per-layer caches (kept keys re-rotated when positions change, deep layers fold the rest into one
summary token); a question is answered from the compact cache and then dropped, and the last Q/A
conditions the next guidance prompts. Unlike the paper's code it never re-encodes anything, and
positions are explicit: each request is placed at the stream's clock, not at the cache length.

Stream layout (shared with the runtime, see ``sglang_hermes.layout``): prefix = chat template up to
the user turn; each chunk is one vision segment placed at the clock (Qwen2.5-VL: one video whose own
M-RoPE positions start there; Gemma 3: its frames as images, 1D positions); a question is
`text<|im_end|>\n<|im_start|>assistant\n`. Without compression this is exactly one stateless prompt
holding every chunk in order.

Guidance, as the runtime does it, in the stream's mode (``HermesConfig.guidance``): ``passes`` runs
each prompt as its own forward after the chunk at the clock, attending to prefix + memory + chunk only
(the paper's way); ``block`` runs the three prompts as ONE causal block after the chunk, so later
prompts attend to earlier ones. A prompt's score for a token is its queries' attention to that token,
renormalised over the stream's cached tokens (prefix + candidates), averaged over its queries and
heads. The two modes do not score alike: on the tiny random Qwen2.5-VL the kept sets differ in
almost every layer (mean Jaccard 0.79, docs/runtime-design.md), so the runtime is compared with the
reference in the same mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.model_facts import ModelFacts
from sglang_hermes.layout import (GUIDANCE_ORDER, IMAGE_SEGMENT, IMAGE_SEGMENTS, TIER_PROMPT, VIDEO_SEGMENT,
                                  guidance_block, guidance_parts, prefix_text)
from sglang_hermes.policy import CompactionPlan, StreamView, get_policy
from sglang_hermes.policy.base import SUMMARY_CHUNK
from sglang_hermes.policy.positions import needs_reindex
from sglang_hermes.policy.rope import fold_summary, rotate_by_delta
from sglang_hermes.policy.tiers import layer_tiers



class QwenVideoLayout:
    """Qwen2.5-VL: a chunk is one video segment; 3-axis M-RoPE positions from the model's own
    get_rope_index for that segment alone, placed at the clock."""

    axes = 3

    def __init__(self, streamer: "ReferenceStreamer"):
        self.s = streamer

    def chunk(self, frames: np.ndarray) -> tuple[dict, torch.Tensor]:
        from transformers.video_utils import VideoMetadata

        inputs = self.s.processor(text=[VIDEO_SEGMENT], videos=[frames], do_sample_frames=False,
                                  video_metadata=[VideoMetadata(total_num_frames=len(frames), fps=self.s.fps)],
                                  return_tensors="pt")
        rel, _ = self.s.model.model.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs.get("second_per_grid_ts"))
        media = dict(pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"])
        return dict(input_ids=inputs["input_ids"], **media), rel[:, 0]

    def position_ids(self, pos: torch.Tensor) -> torch.Tensor:
        return pos[:, None, :]  # [3, 1, T]


class Gemma3ImageLayout:
    """Gemma 3 (1D RoPE): a chunk is its frames as consecutive images; positions are an arange.
    Attention over image tokens stays causal, as in SGLang's CPU path (see testing.tiny_models)."""

    axes = 1

    def __init__(self, streamer: "ReferenceStreamer"):
        self.s = streamer

    def chunk(self, frames: np.ndarray) -> tuple[dict, torch.Tensor]:
        from PIL import Image

        inputs = self.s.processor(text=[IMAGE_SEGMENT * len(frames)], images=[Image.fromarray(f) for f in frames],
                                  return_tensors="pt")
        n = inputs["input_ids"].shape[1]
        return dict(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"]), torch.arange(n)[None]

    def position_ids(self, pos: torch.Tensor) -> torch.Tensor:
        return pos[:1]  # [1, T]


class LlavaOnevisionImageLayout(Gemma3ImageLayout):
    """LLaVA-OneVision (Qwen2 LM, 1D RoPE): a chunk is its frames as consecutive ``<image>``s, as SGLang's
    transformers backend takes them (each frame an anyres image: base grid + its high-resolution patch)."""

    def chunk(self, frames: np.ndarray) -> tuple[dict, torch.Tensor]:
        from PIL import Image

        inputs = self.s.processor(text=[IMAGE_SEGMENTS["llava_onevision"] * len(frames)],
                                  images=[Image.fromarray(f) for f in frames], return_tensors="pt")
        n = inputs["input_ids"].shape[1]
        media = dict(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
        return dict(input_ids=inputs["input_ids"], **media), torch.arange(n)[None]


LAYOUTS = {"qwen2_5_vl": QwenVideoLayout, "gemma3": Gemma3ImageLayout, "llava_onevision": LlavaOnevisionImageLayout}


@dataclass
class Answer:
    text: str
    token_ids: list[int]
    logprobs: list[float]
    forwards: int  # model forwards spent answering (1 prefill + one per further token)


@dataclass
class _Memory:
    """Per-layer positions [N, 3], summary flags and chunk numbers of the candidates after the prefix."""

    positions: list[torch.Tensor] = field(default_factory=list)
    is_summary: list[torch.Tensor] = field(default_factory=list)
    chunk: list[torch.Tensor] = field(default_factory=list)
    chunks: int = 0  # appends so far


class ReferenceStreamer:
    def __init__(self, model_dir: str | Path, cfg: HermesConfig, *, system_prompt: str = "You are a helpful assistant.",
                 fps: float = 2.0, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        self.policy = get_policy(cfg)
        self.fps = fps
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_dir, dtype=dtype, attn_implementation="eager").eval()
        facts = ModelFacts.from_hf_config(self.model.config)
        self.num_layers = facts.num_layers
        self.rope = facts.rope  # every layer's own rotary definition (sglang_hermes.rotary)
        self.max_positions = facts.max_positions
        self.tiers = layer_tiers(self.num_layers, cfg)
        self.layout = LAYOUTS[self.model.config.model_type](self)
        self.cache = None
        self.clock = 0
        self.prefix_len = 0
        self.memory = _Memory()
        self.last_qa: tuple[str, str] | None = None
        self.compressions = 0
        self.plans: list[CompactionPlan] = []  # every executed plan, in order
        self._prefill_text(prefix_text(system_prompt), prefix=True)

    # -- forwards ----------------------------------------------------------------------------

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor, *, attentions: bool = False, **media):
        """positions: [3, T] (all three rows used for M-RoPE, the first for 1D RoPE)."""
        from transformers import DynamicCache

        if self.cache is None:
            # Plain full-attention layers for every layer, sliding ones included: a sliding-window cache
            # layer sizes its masks by the tokens it has SEEN, which compaction makes wrong (and sliding
            # windows here are longer than any stream; see testing.tiny_models.build_tiny_gemma3).
            self.cache = DynamicCache()
        with torch.no_grad():
            out = self.model.model(input_ids=input_ids, position_ids=self.layout.position_ids(positions),
                                   past_key_values=self.cache, use_cache=True,
                                   output_attentions=attentions, **media)
            logits = self.model.lm_head(out.last_hidden_state[:, -1:])
        return logits[0, -1], out

    def _text_ids(self, text: str) -> torch.Tensor:
        return self.processor.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def _text_positions(self, n: int) -> torch.Tensor:
        return torch.arange(self.clock, self.clock + n).expand(3, n)

    def _prefill_text(self, text: str, *, prefix: bool = False):
        ids = self._text_ids(text)
        logits, _ = self._forward(ids, self._text_positions(ids.shape[1]))
        if prefix:
            self.prefix_len += ids.shape[1]
            self.clock += ids.shape[1]
        return logits, ids.shape[1]

    @property
    def cache_len(self) -> int:
        return 0 if self.cache is None else self.cache.get_seq_length()

    # -- append ------------------------------------------------------------------------------

    def append(self, frames: np.ndarray) -> CompactionPlan | None:
        """Prefill one chunk of frames [n, H, W, 3] as one vision segment, then compress if needed."""
        inputs, rel = self.layout.chunk(frames)
        pos = rel.expand(3, -1) + self.clock  # [3, T]
        self._forward(**inputs, positions=pos)
        self.clock = int(pos.max()) + 1
        new = pos.T[:, : self.layout.axes].contiguous()  # [T, A]
        for l in range(self.num_layers):
            if len(self.memory.positions) <= l:
                self.memory.positions.append(torch.empty(0, self.layout.axes, dtype=torch.long))
                self.memory.is_summary.append(torch.empty(0, dtype=torch.bool))
                self.memory.chunk.append(torch.empty(0, dtype=torch.long))
            self.memory.positions[l] = torch.cat([self.memory.positions[l], new])
            self.memory.is_summary[l] = torch.cat([self.memory.is_summary[l], torch.zeros(len(new), dtype=torch.bool)])
            self.memory.chunk[l] = torch.cat([self.memory.chunk[l], torch.full((len(new),), self.memory.chunks)])
        self.memory.chunks += 1
        return self._maybe_compress()

    def guidance_mass(self) -> torch.Tensor:
        """[L, 3, N]: each guidance prompt's (GUIDANCE_ORDER) attention mass over the candidates now."""
        if self.cfg.guidance == "passes":
            parts = guidance_parts(self.cfg.prompts, self.last_qa)
            return torch.stack([self._query_mass(self._text_ids(parts[name])).mean(1) for name in GUIDANCE_ORDER],
                               dim=1)
        block = guidance_block(self.cfg.prompts, self.last_qa, lambda t: self._text_ids(t)[0].tolist())
        per_query = self._query_mass(torch.tensor([block.token_ids]))
        seg = torch.tensor(block.segments)
        return torch.stack([per_query[:, seg == s].mean(1) for s in range(len(GUIDANCE_ORDER))], dim=1)

    def _query_mass(self, ids: torch.Tensor) -> torch.Tensor:
        """[L, G, N]: each query's attention over the candidates (mean over heads), renormalised over
        the stream's cached tokens, from one forward of `ids` [1, G] at the clock (then dropped)."""
        _, out = self._forward(ids, self._text_positions(ids.shape[1]), attentions=True)
        stream_len = self.prefix_len + self._n_candidates()
        self.cache.crop(stream_len)
        mass = []
        for a in out.attentions:  # [1, H, G, K]
            p = a[0, :, :, :stream_len].double()
            p = p / p.sum(-1, keepdim=True)
            mass.append(p[:, :, self.prefix_len:].mean(0))
        return torch.stack(mass)

    def _guidance_attention(self) -> torch.Tensor:
        """[L, N]: each layer's tier-appropriate guidance prompt's attention mass over the candidates."""
        mass = self.guidance_mass()
        pick = [GUIDANCE_ORDER.index(TIER_PROMPT[t.value]) for t in self.tiers]
        return mass[torch.arange(self.num_layers), pick]

    def _n_candidates(self) -> int:
        return len(self.memory.positions[0]) if self.memory.positions else 0

    def _maybe_compress(self) -> CompactionPlan | None:
        if not self.policy.compresses or self._n_candidates() <= self.cfg.budget_tokens:
            return None
        self._last_attention = self._guidance_attention()
        view = StreamView(self._last_attention, torch.stack(self.memory.positions),
                          torch.stack(self.memory.is_summary), torch.stack(self.memory.chunk),
                          memory_start=self.prefix_len)
        reindex = needs_reindex(self.cfg.reindex, self.clock, self.max_positions, self.cfg.reindex_margin)
        plan = self.policy.plan(view, reindex=reindex)
        if plan is not None:
            self._execute(plan)
            if reindex:
                self.clock = int(plan.new_pos.max()) + 1
        return plan

    def _execute(self, plan: CompactionPlan) -> None:
        P = self.prefix_len
        delta, fold_delta = plan.rotation_delta(), plan.fold_delta()
        chunk = plan.carry(torch.stack(self.memory.chunk), SUMMARY_CHUNK)
        for l, layer in enumerate(self.cache.layers):
            k = layer.keys[0].transpose(0, 1)  # [T, H, D]
            v = layer.values[0].transpose(0, 1)
            cand_k, cand_v = k[P:], v[P:]
            kept = plan.keep[l][plan.keep[l] >= 0]
            new_k = rotate_by_delta(cand_k[kept], self._delta(delta[l, : len(kept)]), self.rope, l)
            new_v = cand_v[kept]
            if plan.has_summary[l]:
                folded = plan.fold[l][plan.fold[l] >= 0]
                sk, sv = fold_summary(cand_k[folded], cand_v[folded], self._delta(plan.fold_pos[l, : len(folded)]),
                                      self._delta(plan.summary_position()[l]), self.rope, l)
                new_k, new_v = torch.cat([new_k, sk[None]]), torch.cat([new_v, sv[None]])
            layer.keys = torch.cat([k[:P], new_k]).transpose(0, 1)[None].contiguous()
            layer.values = torch.cat([v[:P], new_v]).transpose(0, 1)[None].contiguous()
            self.memory.positions[l] = plan.new_pos[l].clone()
            self.memory.is_summary[l] = plan.keep[l] < 0
            self.memory.chunk[l] = chunk[l]
        self.compressions += 1
        self.plans.append(plan)

    def _delta(self, d: torch.Tensor) -> torch.Tensor:
        """Positions/deltas as policy.rope wants them: [N, 3] for M-RoPE, [N] (or scalar) for 1D."""
        return d if self.rope.axes > 1 else d[..., 0]

    # -- ask ---------------------------------------------------------------------------------

    def ask(self, question: str, max_new_tokens: int = 8) -> Answer:
        """Greedy answer from the compact cache; question and answer are dropped afterwards."""
        memory_len, clock = self.cache_len, self.clock
        eos = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        logits, n = self._prefill_text(f"{question}<|im_end|>\n<|im_start|>assistant\n")
        self.clock += n
        ids, logprobs, forwards = [], [], 1
        for step in range(max_new_tokens):
            token = int(logits.argmax())
            if token == eos:
                break
            ids.append(token)
            logprobs.append(float(torch.log_softmax(logits.double(), -1)[token]))
            if step + 1 < max_new_tokens:
                logits, _ = self._forward(torch.tensor([[token]]), self._text_positions(1))
                self.clock += 1
                forwards += 1
        self.cache.crop(memory_len)
        self.clock = clock
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
        self.last_qa = (question, text)
        return Answer(text, ids, logprobs, forwards)

    def tokens_held(self) -> list[int]:
        """KV entries per layer right now (prefix + memory)."""
        return [layer.keys.shape[-2] for layer in self.cache.layers]
