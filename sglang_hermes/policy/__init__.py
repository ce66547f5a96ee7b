"""The HERMES algorithm and its baselines as engine-free torch (never imports sglang).

Pieces compose kvpress-style: tiers give per-layer parameters, scores/smoothing turn attention into
importance, selection and summary folding turn importance into a :class:`CompactionPlan` that the
runtime (and the HF reference) execute; rope re-rotates keys when positions change.
"""

from sglang_hermes.policy.base import Policy, StreamView, get_policy, registered_policies
from sglang_hermes.policy.plan import CompactionPlan

__all__ = ["CompactionPlan", "Policy", "StreamView", "get_policy", "registered_policies"]
