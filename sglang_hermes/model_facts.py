"""What compaction needs to know about a model, read from its HF config the same way everywhere
(the HF reference and the runtime): layer count, its rotary definition per layer, position limit."""

from __future__ import annotations

from dataclasses import dataclass

from sglang_hermes.policy.rope import Rope
from sglang_hermes.rotary import rope_from_hf_config, text_config


@dataclass(frozen=True)
class ModelFacts:
    num_layers: int
    rope: Rope  # every layer's frequencies, M-RoPE axes and rotary dims (sglang_hermes.rotary)
    max_positions: int
    min_frame_tokens: float = 1.0  # fewest vision tokens one video frame can cost on this model

    def min_chunk_tokens(self, frames: int) -> int:
        """A lower bound on the tokens of a chunk of ``frames`` frames, whatever their resolution."""
        return max(1, int(frames * self.min_frame_tokens))

    @property
    def axes(self) -> int:
        return self.rope.axes

    @classmethod
    def from_hf_config(cls, config) -> "ModelFacts":
        """Raises ``rotary.UnsupportedRotary`` for a RoPE variant keys cannot be re-rotated for (the
        server refuses such a model at start, so a running server never sees it)."""
        text = text_config(config)
        return cls(text.num_hidden_layers, rope_from_hf_config(config), text.max_position_embeddings,
                   _min_frame_tokens(config))


def _min_frame_tokens(config) -> float:
    """Gemma 3 turns every image into a fixed number of tokens; Qwen2.5-VL's video tokens depend on
    resolution, and at least one merged patch covers ``temporal_patch_size`` frames."""
    per_image = getattr(config, "mm_tokens_per_image", None)
    if per_image:
        return float(per_image)
    vision = getattr(config, "vision_config", None)
    temporal = getattr(vision, "temporal_patch_size", None) if vision is not None else None
    return 1.0 / temporal if temporal else 1.0
