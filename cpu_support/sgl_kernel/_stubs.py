"""Raising stand-ins for every sgl_kernel op SGLang touches while importing its CPU path."""

from __future__ import annotations

import torch

# Names SGLang checks with hasattr() to decide whether the AMX backend exists: leave them absent.
PROBED_NAMES = frozenset(
    {
        "convert_weight_packed",
        "fused_qk_norm_cpu",
        "fused_qk_norm_rope_cpu",
        "gdn_attention",
        "get_device_accessible_ptr",
    }
)

# torch.ops.sgl_kernel.<name> attributes read at import time somewhere in sglang 0.5.23.
OP_NAMES = """
fused_experts_cpu weight_packed_linear rmsnorm_cpu l2norm_cpu topk_sigmoid_cpu shm_allreduce
shm_allgather rotary_embedding_cpu query_device qkv_proj_with_rope_fused_weight int4_scaled_mm_cpu
init_cpu_threads_env gelu_and_mul_cpu fused_sigmoid_mul_cpu fused_rmsnorm_gated_cpu fp8_scaled_mm_cpu
deepseek_v4_topk_transform_512 convert_scale_packed apply_gguf_moe_weights topk_transform_ragged
topk_transform_paged topk_transform topk_softmax_cpu store_cache_cpu silu_and_mul_cpu
shm_group_initialize shm_alltoall shared_expert_cpu rotary_embedding murmur_hash32_cpu
multimodal_rotary_embedding_cpu layernorm_cpu int8_scaled_mm_with_quant initialize
image_preprocess_cpu grouped_topk_cpu gemma_rmsnorm_cpu gemma_fused_add_rmsnorm_cpu gemma4_rmsnorm_cpu
gemma3_rmsnorm_cpu gelu_tanh_and_mul_cpu fused_sigmoid_gating_delta_rule_update_cpu
fused_scale_shift_cpu fused_scale_residual_norm_scale_shift_cpu fused_scale_residual_norm_scale_shift
fused_qkvzba_split_reshape_cat_cpu fused_qkvzba_split_reshape_cat_contiguous_cpu
fused_qk_rmsnorm_sumsq_cpu fused_qk_rmsnorm_cpu fused_qk_rmsnorm_apply_from_stats_cpu
fused_qk_gemma_rmsnorm_with_gate_cpu fused_qk_gemma_rmsnorm_cpu fused_norm_scale_shift_cpu
fused_moe_router_cpu fused_linear_sigmoid_mul fused_input_proj_cpu fused_gdn_gating_cpu
fused_dual_residual_rmsnorm_cpu fused_add_rmsnorm_cpu fp8_per_tensor_scaled_mm_cpu
flash_attn_varlen_func extend_attention_cpu dsv4_fused_q_indexer_rope_hadamard_quant
decode_attention_cpu convert_weight_packed_scale_zp conv3d_embed_weight_pack conv3d_embed_cpu
causal_conv1d_weight_pack bmm_cpu biased_grouped_topk_cpu apply_rotary_pos_emb_cpu
apply_multidimensional_rope_cpu
""".split()

_registered = False
_LIB = None


def make_stub(name: str):
    def stub(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel.{name} is not available in the CPU stand-in; SGLang should have taken its "
            "native torch path here (is AMX support being misdetected?)"
        )

    stub.__name__ = name
    return stub


def register_stub_ops() -> None:
    """Define every op in OP_NAMES under torch.ops.sgl_kernel, each raising when called."""
    global _registered, _LIB
    if _registered:
        return
    _LIB = torch.library.Library("sgl_kernel", "FRAGMENT")
    for name in OP_NAMES:
        if name in PROBED_NAMES:
            continue
        _LIB.define(f"{name}(Tensor[] args) -> ()")
        _LIB.impl(name, _raising_impl(name), "CompositeExplicitAutograd")
    _registered = True


def _raising_impl(name: str):
    def impl(args):
        raise NotImplementedError(f"torch.ops.sgl_kernel.{name} is a raising stub (CPU stand-in)")

    return impl
