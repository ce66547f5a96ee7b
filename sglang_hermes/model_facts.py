"""What compaction needs to know about a model, read from its HF config the same way everywhere
(the HF reference and the runtime): layer count, RoPE base, M-RoPE sections, position limit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFacts:
    num_layers: int
    rope_theta: float
    mrope_section: tuple[int, ...] | None  # None for 1D RoPE
    max_positions: int
    min_frame_tokens: float = 1.0  # fewest vision tokens one video frame can cost on this model

    def min_chunk_tokens(self, frames: int) -> int:
        """A lower bound on the tokens of a chunk of ``frames`` frames, whatever their resolution."""
        return max(1, int(frames * self.min_frame_tokens))

    @property
    def axes(self) -> int:
        return 3 if self.mrope_section is not None else 1

    @classmethod
    def from_hf_config(cls, config) -> "ModelFacts":
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
        rope = rope.get("full_attention", rope)  # Gemma 3 keeps one entry per attention type
        theta = rope.get("rope_theta", getattr(text, "rope_theta", None))
        section = rope.get("mrope_section")
        return cls(text.num_hidden_layers, float(theta), tuple(section) if section else None,
                   text.max_position_embeddings, _min_frame_tokens(config))


def _min_frame_tokens(config) -> float:
    """Gemma 3 turns every image into a fixed number of tokens; Qwen2.5-VL's video tokens depend on
    resolution, and at least one merged patch covers ``temporal_patch_size`` frames."""
    per_image = getattr(config, "mm_tokens_per_image", None)
    if per_image:
        return float(per_image)
    vision = getattr(config, "vision_config", None)
    temporal = getattr(vision, "temporal_patch_size", None) if vision is not None else None
    return 1.0 / temporal if temporal else 1.0
