"""One typed configuration for a HERMES stream, with the paper's defaults (arXiv 2601.14724, §3).

Served as JSON by the session API and validated once at the edge, so the policy code can trust it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sglang_hermes.last_round import last_round

PolicyName = Literal["hermes", "full", "fifo", "sink_window", "uniform", "recent_hermes"]

# How the guidance prompts are scored: each in its own pass over prefix + memory + chunk (the paper's
# way), or all three as one causal block after the chunk inside the append's own forward (cheaper;
# later prompts then see the earlier ones).
GuidanceMode = Literal["passes", "block"]
# Counts are bounded so that no value a client sends (the config also arrives in hermes tags on stock
# routes) can overflow the int32/int64 tensors the runtime builds from them; floats must be finite.
MAX_COUNT = (1 << 31) - 1

LOCAL_PROMPT = ("Describe the current scene in detail, focusing on specific objects, fine-grained actions, "
                "and spatial relationships.")
GLOBAL_PROMPT = ("Summarize the video narrative, identifying main characters, key events, timeline changes, "
                 "and the overall theme.")


class TierMixing(BaseModel):
    """Recency/attention mix of one tier: S = (1-a)·A + a·R with R = exp(-k·age)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)
    a: float = Field(ge=0.0, le=1.0)
    k: float = Field(ge=0.0)
    smoothing: float = Field(ge=0.0, le=1.0, description="λ of the deep-to-shallow smoothing")


class GuidancePrompts(BaseModel):
    """Generic pseudo-queries whose attention scores the cache; conditioned on the last Q/A."""

    model_config = ConfigDict(frozen=True)
    local: str = LOCAL_PROMPT
    global_: str = Field(GLOBAL_PROMPT, alias="global")
    global_conditioned: str = "Context summary: Question: {question} Answer: {answer}. {prompt}"
    local_conditioned: str = "Find recent details related to: Question: {question} Answer: {answer}. {prompt}"

    def render(self, last_qa: tuple[str, str] | None = None) -> dict[str, str]:
        """The three guidance texts (local, global, mixed), conditioned on the last Q/A if any
        (quoted as :func:`sglang_hermes.last_round.last_round` spells it)."""
        local, global_ = self.local, self.global_
        if last_qa is not None:
            q, a = last_round(*last_qa)
            local = self.local_conditioned.format(question=q, answer=a, prompt=local)
            global_ = self.global_conditioned.format(question=q, answer=a, prompt=global_)
        return {"local": local, "global": global_, "mixed": f"{local}; {global_}"}


# Defaults that differ by architecture, as the paper's numbers were produced: the authors' Qwen2.5-VL code
# (inference/qwenvl_hermes.py) mixes middle layers with a = 0.75 - 0.6p, k = 20 - 12p (the class defaults
# below), their LLaVA-OneVision code (llavaov_hermes.py:528-529) with a = 1 - 0.9p, k = 20 - 19.5p
# (docs/fidelity.md). Keyed by the HF config's ``model_type``; a field a client sets always wins.
ARCHITECTURE_DEFAULTS: dict[str, dict] = {
    "llava_onevision": {"middle_start": TierMixing(a=1.0, k=20.0, smoothing=0.3),
                        "middle_end": TierMixing(a=0.1, k=0.5, smoothing=0.3)},
}


class HermesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, allow_inf_nan=False)

    policy: PolicyName = "hermes"
    budget_tokens: int = Field(4096, ge=1, le=MAX_COUNT, description="video tokens kept per layer (M)")
    shallow_ratio: float = Field(0.1, ge=0.0, le=1.0)
    deep_ratio: float = Field(0.3, ge=0.0, le=1.0)
    shallow: TierMixing = TierMixing(a=1.0, k=20.0, smoothing=0.1)
    deep: TierMixing = TierMixing(a=0.0, k=0.0, smoothing=0.4)
    # Middle layers interpolate linearly between these endpoints (p = 0 next to shallow, 1 next to deep).
    middle_start: TierMixing = TierMixing(a=0.75, k=20.0, smoothing=0.3)
    middle_end: TierMixing = TierMixing(a=0.15, k=8.0, smoothing=0.3)
    summary_token: bool = True
    reindex: Literal["lazy", "eager"] = "lazy"
    reindex_margin: int = Field(1024, ge=0, le=MAX_COUNT)
    sink_tokens: int = Field(64, ge=0, le=MAX_COUNT, description="first tokens kept by the sink_window policy")
    recent_tokens: int | None = Field(None, ge=0, le=MAX_COUNT, description="newest tokens the recent_hermes "
                                      "policy keeps in every layer (W); default budget_tokens // 4")
    chunk_frames: int = Field(16, ge=1, le=MAX_COUNT)
    max_chunk_tokens: int = Field(4096, ge=1, le=MAX_COUNT, description="most vision tokens one append may add")
    prompts: GuidancePrompts = GuidancePrompts()
    guidance: GuidanceMode = "block"

    @model_validator(mode="after")
    def _check(self) -> "HermesConfig":
        if self.shallow_ratio + self.deep_ratio > 1.0:
            raise ValueError(
                f"shallow_ratio + deep_ratio must be <= 1 (got {self.shallow_ratio} + {self.deep_ratio})")
        if self.policy == "sink_window" and self.sink_tokens >= self.budget_tokens:
            raise ValueError(f"sink_tokens ({self.sink_tokens}) must be < budget_tokens ({self.budget_tokens})")
        if self.policy == "recent_hermes" and self.recent_window >= self.budget_tokens:
            raise ValueError(f"recent_tokens ({self.recent_window}) must be < budget_tokens ({self.budget_tokens})")
        if self.summary_token and self.budget_tokens < 2 and self.deep_ratio > 0:
            raise ValueError("budget_tokens must be >= 2 when deep layers keep a summary token")
        return self

    @classmethod
    def for_architecture(cls, model_type: str, **fields) -> "HermesConfig":
        """The config with ``model_type``'s defaults (:data:`ARCHITECTURE_DEFAULTS`) under ``fields``."""
        return cls(**{**ARCHITECTURE_DEFAULTS.get(model_type, {}), **fields})

    @property
    def recent_window(self) -> int:
        """W of the recent_hermes policy."""
        return self.budget_tokens // 4 if self.recent_tokens is None else self.recent_tokens
