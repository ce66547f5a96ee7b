"""The startup gate: every configuration a stream cannot run in is refused before anything is served.

A stream's KV is read and rewritten in place by hermes kernels, and its turns run through hooks on
SGLang internals. Configurations that break those assumptions do not fail cleanly at the first turn:
some crash the scheduler, some corrupt another request's KV without a word (see the "Supported
configurations" table in docs/install.md). So each one is refused at start, as early as it can be known:

- the SGLang version, in ``hermes-serve`` and in the plugin's ``register()``;
- command-line flags, in ``hermes-serve`` before SGLang starts (:func:`flag_refusals`, on the raw values);
- what only the loaded model and KV pool reveal, and whether every hook really patched its target,
  in the cache factory, which runs in each scheduler after SGLang applied the hooks (:func:`engine_refusals`).

A refusal is a :class:`UnsupportedConfiguration`: a ``SystemExit`` carrying one line that says what is
supported, because SGLang's plugin loader and scheduler swallow or log ordinary exceptions and would
then serve half-patched; a ``SystemExit`` ends the process with that line as its last words.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
from collections.abc import Iterable, Mapping

SUPPORTED_SGLANG = "0.5.23"
PREFIX = "sglang-hermes refuses to start:"

_KV_DTYPES = ("auto", "bf16", "bfloat16")  # stored in the model's compute dtype, which the kernels move as is
_HND_ENV = "SGLANG_USE_HND_KVCACHE"


class UnsupportedConfiguration(SystemExit):
    """A configuration sglang-hermes refuses; the message is one line ending with what is supported."""

    def __init__(self, reason: str):
        super().__init__(f"{PREFIX} {reason}")


def refuse(reasons: Iterable[str | None]) -> None:
    """Raise for the first reason, if any (one line, so the operator sees exactly one cause)."""
    for reason in reasons:
        if reason:
            raise UnsupportedConfiguration(reason)


def version_refusal(version: str) -> str | None:
    if version != SUPPORTED_SGLANG:
        return f"SGLang {version} is installed; sglang-hermes supports SGLang {SUPPORTED_SGLANG} only"
    return None


def installed_version_refusal() -> str | None:
    import sglang

    return version_refusal(getattr(sglang, "__version__", "unknown"))


def parse_sglang_flags(argv: list[str]) -> argparse.Namespace:
    """SGLang's own parser, without ``ServerArgs``' post-processing: that step already probes the device
    and fails on some flags before we could refuse them."""
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="hermes-serve", add_help=False)
    ServerArgs.add_cli_args(parser)
    if "--config" in argv:
        from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger

        argv = ConfigArgumentMerger(parser).merge_config_with_args(argv)
    return parser.parse_known_args(argv)[0]


def flag_refusals(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> list[str]:
    """Reasons to refuse these (raw) SGLang flags; empty when a stream can run with them."""
    def has(name, default=None):
        return getattr(args, name, default)

    reasons = []
    if (has("tokenizer_worker_num") or 1) > 1:
        reasons.append(f"--tokenizer-worker-num {has('tokenizer_worker_num')}: the session routes and stream "
                       "records live in the one tokenizer process; supported: --tokenizer-worker-num 1")
    if has("speculative_algorithm"):
        reasons.append(f"--speculative-algorithm {has('speculative_algorithm')}: draft and verify forwards do not "
                       "keep a stream's positions and the draft KV is never compacted; supported: no speculative "
                       "decoding")
    if has("kv_cache_dtype", "auto") not in _KV_DTYPES:
        reasons.append(f"--kv-cache-dtype {has('kv_cache_dtype')}: compaction and scoring read KV as stored, without "
                       "scales or dequantization; supported: --kv-cache-dtype auto or bf16")
    if has("cuda_graph_backend_prefill") in ("full", "breakable"):
        reasons.append(f"--cuda-graph-backend-prefill {has('cuda_graph_backend_prefill')}: a replayed prefill graph "
                       "skips the attention hook that scores each append; supported: disabled (hermes-serve's "
                       "default)")
    for flag, name, why in (
        ("--tp-size", "tp_size", "ranks would keep different tokens (no cross-rank reduction of attention mass)"),
        ("--pp-size", "pp_size", "pipeline stages hold only some layers' KV"),
        ("--attn-cp-size", "attn_cp_size", "context parallelism splits a stream's KV across ranks"),
        ("--dcp-size", "dcp_size", "decode context parallelism splits a stream's KV across ranks"),
        ("--attn-dp-size", "attn_dp_size", "nothing pins a stream's turns to one attention data-parallel rank"),
    ):
        if (has(name) or 1) > 1:
            reasons.append(f"{flag} {has(name)}: {why}; supported: {flag} 1")
    for flag, name, why in (
        ("--enable-dp-attention", "enable_dp_attention", "nothing pins a stream's turns to one attention DP rank"),
        ("--enable-prefill-cp", "enable_prefill_cp", "context parallelism splits a stream's KV across ranks"),
        ("--enable-two-batch-overlap", "enable_two_batch_overlap", "split batches are never scored"),
        ("--enable-page-major-kv-layout", "enable_page_major_kv_layout", "the kernels need the token-major layout"),
    ):
        if has(name):
            reasons.append(f"{flag}: {why}; supported: without {flag}")
    if (has("page_size") or 1) > 1:
        reasons.append(f"--page-size {has('page_size')}: paged KV is untested with stream compaction; "
                       "supported: --page-size 1")
    if has("disaggregation_mode", "null") != "null":
        reasons.append(f"--disaggregation-mode {has('disaggregation_mode')}: a stream's KV lives in one server; "
                       "supported: --disaggregation-mode null")
    for flag in ("attention_backend", "prefill_attention_backend", "decode_attention_backend"):
        if has(flag) == "aiter":
            reasons.append(f"--{flag.replace('_', '-')} aiter: AITER's KV layout is not the token-major layout the "
                           "kernels read; supported: flashinfer, fa3, triton, torch_native")
    if env.get(_HND_ENV, "").lower() in ("1", "true", "yes"):
        reasons.append(f"{_HND_ENV}={env[_HND_ENV]}: the kernels read the token-major (NHD) KV layout; "
                       f"supported: {_HND_ENV} unset")
    return reasons


def unpatched_hook_targets(hooks: Mapping[str, list], resolve=pkgutil.resolve_name) -> list[str]:
    """Targets carrying a hermes hook that are not wrapped: SGLang only logs a target it cannot resolve or
    patch, and a stream half-patched runs on without compaction or with wrong positions."""
    missing = []
    for target, entries in hooks.items():
        if not any(getattr(hook, "__module__", "").startswith("sglang_hermes") for _, hook, _ in entries):
            continue
        try:
            patched = hasattr(resolve(target), "__wrapped__")
        except (ImportError, AttributeError, ValueError):
            patched = False
        if not patched:
            missing.append(target)
    return missing


def architecture_refusals(hf_config) -> list[str]:
    """A stream needs to know how a chunk is written for the model (``layout.STREAM_MODEL_TYPES``); any other
    architecture would be sent another model's placeholders."""
    from sglang_hermes.layout import STREAM_MODEL_TYPES

    model_type = getattr(hf_config, "model_type", None)
    if model_type in STREAM_MODEL_TYPES:
        return []
    return [f"model type {model_type!r} ({', '.join(getattr(hf_config, 'architectures', None) or [])}): streams have "
            f"no chunk layout for it; supported: {', '.join(STREAM_MODEL_TYPES)}"]


def _rope_refusals(hf_config) -> list[str]:
    """Re-rotation follows the model's own rotary definition per layer (``sglang_hermes.rotary``); a variant
    it cannot reproduce exactly (sequence-dependent scaling, unknown types) is refused here."""
    from sglang_hermes.rotary import rotary_refusal

    reason = rotary_refusal(hf_config)
    return [reason] if reason else []


def engine_refusals(ctx) -> list[str]:
    """Reasons to refuse what the scheduler built: ``ctx`` is SGLang's ``TreeCacheBuildContext``."""
    import torch
    from sglang.srt.configs.model_config import AttentionArch
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool
    from sglang.srt.model_executor.cuda_graph_config import Backend, Phase, check_cuda_graph_backend
    from sglang.srt.plugins.hook_registry import HookRegistry

    reasons = []
    missing = unpatched_hook_targets(HookRegistry._hooks)
    if missing:
        reasons.append(f"hook target(s) not patched in this SGLang: {', '.join(missing)}; supported: SGLang "
                       f"{SUPPORTED_SGLANG}")
    args = ctx.server_args
    reasons += flag_refusals(args)
    if not check_cuda_graph_backend(Phase.PREFILL, Backend.DISABLED):
        reasons.append("prefill CUDA graphs: a replayed prefill graph skips the attention hook that scores each "
                       "append; supported: --disable-prefill-cuda-graph (hermes-serve's default)")
    if ctx.is_hybrid_swa or ctx.is_hybrid_ssm or ctx.is_dsa:
        reasons.append("a hybrid (sliding-window, linear-attention/SSM or sparse) KV pool: layers index their own "
                       "pools; supported: models whose every layer is full attention")
    if ctx.model_config.attention_arch == AttentionArch.MLA:
        reasons.append("multi-head latent attention (MLA): the KV pool holds a latent, not keys and values; "
                       "supported: MHA/GQA models")
    reasons += architecture_refusals(ctx.model_config.hf_config)
    reasons += _rope_refusals(ctx.model_config.hf_config)
    pool = ctx.params.token_to_kv_pool_allocator.get_kvcache()
    if type(pool) is not MHATokenToKVPool:
        reasons.append(f"KV pool {type(pool).__name__}: the kernels need SGLang's plain MHATokenToKVPool; "
                       "supported: MHATokenToKVPool")
    elif getattr(pool, "kv_cache_layout", "nhd") != "nhd":
        reasons.append(f"KV layout {pool.kv_cache_layout}: the kernels read the token-major (NHD) layout; "
                       "supported: nhd")
    elif pool.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        reasons.append(f"KV dtype {pool.dtype}: compaction moves float KV; supported: float32, float16, bfloat16")
    elif pool.head_dim != pool.v_head_dim:
        reasons.append(f"key head_dim {pool.head_dim} != value head_dim {pool.v_head_dim}; supported: equal")
    elif str(pool.device).startswith("cuda") and pool.head_dim & (pool.head_dim - 1):
        reasons.append(f"head_dim {pool.head_dim}: the Triton kernels need a power of two; supported: 64, 128, 256")
    return reasons
