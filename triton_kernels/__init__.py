"""GPU kernels for HERMES on SGLang's KV pool layout, each beside its torch reference.

KV pool layout: one buffer per layer, [slots, kv_heads, head_dim], keys stored after RoPE, tokens
addressed by slot index. Nothing here imports sglang. Use :mod:`triton_kernels.dispatch`.
"""
