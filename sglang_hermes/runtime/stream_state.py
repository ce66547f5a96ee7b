"""What the scheduler process knows of every live stream, and of the model it serves.

A stream is an SGLang streaming session whose opening turn carried a hermes tag. Its row in the KV
pool is [prefix P | memory N ≤ M]; between turns the row holds nothing else. The stream, not
SGLang, owns the position clock: after compaction a row index says nothing about a position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import GUIDANCE_ORDER, TIER_PROMPT
from sglang_hermes.model_facts import ModelFacts
from sglang_hermes.policy import Policy, get_policy
from sglang_hermes.policy.tiers import layer_tiers


@dataclass
class Engine:
    """The live model runner, captured on its first forward (the scheduler owns exactly one)."""

    model_runner: object = None
    facts: ModelFacts | None = None

    def bind(self, model_runner) -> None:
        if self.model_runner is None:
            self.model_runner = model_runner
            self.facts = ModelFacts.from_hf_config(model_runner.model_config.hf_config)


engine = Engine()


@dataclass
class Turn:
    """One in-flight request of a stream; lives on the SGLang ``Req`` as ``req.hermes_turn``."""

    stream: "Stream"
    role: str                      # open | append | ask | score
    start_len: int                 # row length when the turn began (the stream's memory)
    chunk_len: int = 0             # appends: the chunk's tokens (candidates), before the guidance block
    guidance: torch.Tensor | None = None        # int64 [G]: prompt index of each guidance (or score turn) token
    chunk_positions: torch.Tensor | None = None  # int64 [T, A]: positions the chunk's tokens were given
    mass: torch.Tensor | None = None            # float32 [L, S, N]: guidance attention over the candidates
    score_ms: float = 0.0                       # time spent scoring the guidance inside the forward

    @property
    def guidance_len(self) -> int:
        return 0 if self.guidance is None else int(self.guidance.numel())


@dataclass
class PendingChunk:
    """A ``passes`` stream's appended chunk while its guidance passes run: in the row after the memory,
    not yet among the candidates. It joins them (and compaction runs) once every prompt is scored;
    dropping it restores the stream as it was before the append."""

    positions: torch.Tensor        # int64 [T, A]: the chunk's positions
    clock_before: int              # the stream's clock before the append
    mass: torch.Tensor | None = None  # float32 [L, S, N + T]: the scored prompts' attention
    scored: set[int] = field(default_factory=set)  # indices (GUIDANCE_ORDER) of the prompts scored so far
    score_ms: float = 0.0

    def add_scores(self, turn: Turn) -> None:
        prompt = int(turn.guidance[0])
        if self.mass is None:
            self.mass = torch.zeros_like(turn.mass)
        self.mass[:, prompt] = turn.mass[:, prompt]
        self.scored.add(prompt)
        self.score_ms += turn.score_ms

    @property
    def complete(self) -> bool:
        return len(self.scored) == len(GUIDANCE_ORDER)


@dataclass
class Stream:
    session_id: str
    cfg: HermesConfig
    policy: Policy
    prefix_len: int = 0
    clock: int = 0
    positions: torch.Tensor | None = None   # int64 [L, N, A]: each candidate's current position
    is_summary: torch.Tensor | None = None  # bool [L, N]
    chunk: torch.Tensor | None = None       # int64 [L, N]: the append each candidate came from
    appends: int = 0
    asks: int = 0
    compressions: int = 0
    reindexes: int = 0
    last_attention: torch.Tensor | None = None  # [L, N] the scores the last compression used
    answer_pending: bool = False   # the last turn was an ask whose answer is still in its req
    media_pending: bool = False    # the last turn was an append whose media the session still carries
    tokens_seen: int = 0           # chunk tokens ever appended
    last_compression_ms: float = 0.0
    last_append_ms: dict = field(default_factory=dict)  # HERMES' own work in the last append: score/plan/compact
    last_turn_rid: str | None = None  # the request id of the newest turn the scheduler accepted
    pending: PendingChunk | None = None  # passes mode: the last append's chunk, awaiting its guidance passes

    @classmethod
    def open(cls, session_id: str, cfg: HermesConfig) -> "Stream":
        return cls(session_id, cfg, get_policy(cfg))

    @property
    def num_candidates(self) -> int:
        return 0 if self.positions is None else self.positions.shape[1]

    @property
    def memory_len(self) -> int:
        """Row length between turns: prefix plus the memory every layer holds."""
        return self.prefix_len + self.num_candidates

    @property
    def row_len(self) -> int:
        """Row length between turns: the memory, plus a chunk awaiting its guidance passes."""
        return self.memory_len + (0 if self.pending is None else len(self.pending.positions))

    @property
    def awaiting_scores(self) -> list[str]:
        """The prompts whose guidance passes the pending chunk still needs, in GUIDANCE_ORDER."""
        if self.pending is None:
            return []
        return [name for i, name in enumerate(GUIDANCE_ORDER) if i not in self.pending.scored]

    def add_candidates(self, new_positions: torch.Tensor, num_layers: int) -> None:
        """Append a chunk's tokens [T, A] to every layer's candidates, as chunk number `self.appends`."""
        new = new_positions[None].expand(num_layers, -1, -1)
        flags = torch.zeros(num_layers, new.shape[1], dtype=torch.bool)
        chunk = torch.full((num_layers, new.shape[1]), self.appends, dtype=torch.long)
        if self.positions is None:
            self.positions, self.is_summary, self.chunk = new.clone(), flags, chunk
        else:
            self.positions = torch.cat([self.positions, new], dim=1)
            self.is_summary = torch.cat([self.is_summary, flags], dim=1)
            self.chunk = torch.cat([self.chunk, chunk], dim=1)

    def tier_attention(self, mass: torch.Tensor) -> torch.Tensor:
        """[L, S, N] per-prompt mass -> [L, N], each layer reading its tier's prompt."""
        tiers = layer_tiers(mass.shape[0], self.cfg)
        pick = torch.tensor([GUIDANCE_ORDER.index(TIER_PROMPT[t.value]) for t in tiers])
        return mass[torch.arange(mass.shape[0]), pick]

    def describe(self, with_positions: bool = False) -> dict:
        out = {"memory_len": self.memory_len, "prefix_len": self.prefix_len, "candidates": self.num_candidates,
               "budget": self.cfg.budget_tokens, "policy": self.cfg.policy, "clock": self.clock,
               "appends": self.appends, "asks": self.asks, "compressions": self.compressions,
               "reindexes": self.reindexes, "last_turn_rid": self.last_turn_rid,
               "tokens_seen": self.tokens_seen, "last_compression_ms": self.last_compression_ms,
               "last_append_ms": self.last_append_ms, "guidance": self.cfg.guidance,
               "awaiting_scores": self.awaiting_scores}
        if with_positions and self.positions is not None:
            out["positions"] = self.positions.tolist()
            out["is_summary"] = self.is_summary.tolist()
            out["chunk"] = self.chunk.tolist()
            if self.last_attention is not None:
                out["last_attention"] = self.last_attention.tolist()
        return out


streams: dict[str, Stream] = {}
