"""Builders for tiny random-weight checkpoints of real VLM architectures, made offline in seconds.

Each builder writes a directory that both HF transformers and SGLang 0.5.23 load as-is: config,
safetensors weights, a locally trained tokenizer with the real special tokens, and the real processor.
Sizes are tiny but structure is real: >= 10 decoder layers so every HERMES tier (shallow/middle/deep)
exists, GQA attention, and the model's own rotary scheme (M-RoPE for Qwen2.5-VL, 1D RoPE for LLaVA).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sglang_hermes.testing.tokenizer import train_tokenizer

# float32 so greedy tokens of SGLang and HF agree on margins, not on rounding luck; serve with
# `--dtype bfloat16` to exercise the production dtype.
DTYPE = torch.float32

QWEN_VL_DEFAULTS = dict(
    num_hidden_layers=12,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    vision_depth=2,
    vision_hidden_size=32,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
)


def _token_id(tokenizer, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(tid, int) and tid != tokenizer.unk_token_id, token
    return tid


def _qwen_vision_token_ids(tokenizer) -> dict[str, int]:
    """The media token ids a Qwen-VL config names (Qwen2.5-VL and Qwen3-VL use the same four)."""
    return {"image_token_id": _token_id(tokenizer, "<|image_pad|>"),
            "video_token_id": _token_id(tokenizer, "<|video_pad|>"),
            "vision_start_token_id": _token_id(tokenizer, "<|vision_start|>"),
            "vision_end_token_id": _token_id(tokenizer, "<|vision_end|>")}


def build_tiny_qwen2_5_vl(path: str | Path, *, seed: int = 0, max_pixels: int = 112 * 112, tokenizer=None,
                          scaled_init: bool = True, **overrides) -> Path:
    """A Qwen2.5-VL with M-RoPE (mrope_section over head_dim/2) and a 2-block vision tower.

    112x112 frames give 4x4 = 16 merged vision tokens per temporal patch (2 frames). ``max_pixels``
    caps the processor's frame size: 224 * 224 gives 8x8 = 64 tokens per 2 frames (bench/ uses it).
    ``tokenizer`` replaces the default locally trained one; ``scaled_init=False`` keeps transformers'
    own initialisation (a starting point for training, see ``training/``).
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    p = {**QWEN_VL_DEFAULTS, **overrides}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(seed=seed) if tokenizer is None else tokenizer
    head_dim = p["hidden_size"] // p["num_attention_heads"]
    half = head_dim // 2
    # Same proportions as Qwen2.5-VL-7B's [16, 24, 24] over 64 frequency pairs.
    t = half // 4
    mrope_section = [t, (half - t) // 2, half - t - (half - t) // 2]
    rope_scaling = {"type": "mrope", "rope_type": "default", "mrope_section": mrope_section}

    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        max_position_embeddings=p["max_position_embeddings"],
        rope_theta=p["rope_theta"],
        rope_scaling=dict(rope_scaling, rope_theta=p["rope_theta"]),
        bos_token_id=_token_id(tokenizer, "<|endoftext|>"),
        eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=p["vision_depth"],
        hidden_size=p["vision_hidden_size"],
        intermediate_size=2 * p["vision_hidden_size"],
        num_heads=p.get("vision_heads", 2),
        out_hidden_size=p["hidden_size"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[p["vision_depth"] - 1],
        tokens_per_second=2,
    )
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        **_qwen_vision_token_ids(tokenizer),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(DTYPE)
    if scaled_init:
        _scale_init(model)
    model.save_pretrained(path, safe_serialization=True)

    pixels = dict(min_pixels=56 * 56, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels, fps=2.0),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(path)
    # SGLang 0.5.23's qwen2_5_vl.py reads these at the top level (transformers-4 layout).
    _patch_config(
        path,
        {
            **{k: text[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                    "num_attention_heads", "num_key_value_heads",
                                    "intermediate_size", "max_position_embeddings", "rope_theta",
                                    "rms_norm_eps")},
            "rope_scaling": rope_scaling,
            "torch_dtype": str(DTYPE).removeprefix("torch."),
            "bos_token_id": text["bos_token_id"],
            "eos_token_id": text["eos_token_id"],
        },
    )
    return path


def build_tiny_qwen3_vl(path: str | Path, *, seed: int = 0, frame_tokens: int = 16, **overrides) -> Path:
    """A dense Qwen3-VL: interleaved M-RoPE, timestamped video frames and DeepStack, at tiny size.

    What makes it Qwen3-VL and not a smaller Qwen2.5-VL, each kept here on purpose:
    - interleaved M-RoPE: ``mrope_section`` [6, 5, 5] over head_dim/2 = 16 frequencies (the 8B's
      [24, 20, 20] over 64, same proportions), ``mrope_interleaved`` set; head_dim is explicit (32)
      and differs from hidden/heads, as in the 4B;
    - the processor writes a ``<t seconds>`` text timestamp before every temporal patch of a video;
    - DeepStack: the vision tower's blocks 0, 1, 2 (of 4) feed three extra mergers whose outputs are
      added to the hidden states of decoder layers 0, 1, 2 at the visual tokens; their weights are
      random at unit scale like the rest, so a misaligned DeepStack visibly changes the logits;
    - q/k RMS norms in attention (Qwen3 text blocks).
    Frames are patchified at 16 px and merged 2x2; the video processor caps every frame at
    ``frame_tokens`` merged tokens (16: a 336x336 frame becomes 128x128, 4x4 tokens per 2 frames),
    whatever the chunk length, as qwen-vl-utils does (``cap_pixels_per_frame``).
    """
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    p = {**QWEN_VL_DEFAULTS, "head_dim": 32, "vision_depth": 4, **overrides}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(seed=seed)
    half = p["head_dim"] // 2
    hw = (half * 5) // 16  # the 8B's 20 of 64 frequencies for each of h and w
    mrope_section = [half - 2 * hw, hw, hw]
    rope = {"rope_type": "default", "rope_theta": p["rope_theta"], "mrope_section": mrope_section,
            "mrope_interleaved": True}
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        head_dim=p["head_dim"],
        max_position_embeddings=p["max_position_embeddings"],
        rope_parameters=rope,
        bos_token_id=_token_id(tokenizer, "<|endoftext|>"),
        eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=p["vision_depth"],
        hidden_size=p["vision_hidden_size"],
        intermediate_size=2 * p["vision_hidden_size"],
        num_heads=2,
        out_hidden_size=p["hidden_size"],
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=list(range(p["vision_depth"] - 1)),
    )
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        **_qwen_vision_token_ids(tokenizer),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(DTYPE)
    _scale_init(model)
    model.save_pretrained(path, safe_serialization=True)

    factor = 16 * 2
    frame_pixels = frame_tokens * factor * factor
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 2 * factor * factor, "longest_edge": frame_pixels},
                                              patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": 2 * factor * factor,
                                                    "longest_edge": frame_pixels * 768},
                                              max_video_tokens=frame_tokens, cap_pixels_per_frame=True,
                                              image_mean=[0.5] * 3, image_std=[0.5] * 3, fps=2.0),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(path)
    # SGLang 0.5.23's qwen3_vl.py builds its Qwen3 decoder from the top-level config (transformers-4 layout).
    _patch_config(
        path,
        {
            **{k: text[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "num_key_value_heads", "head_dim", "intermediate_size",
                                    "max_position_embeddings", "rms_norm_eps")},
            "rope_theta": p["rope_theta"],
            "rope_scaling": rope,
            "torch_dtype": str(DTYPE).removeprefix("torch."),
            "bos_token_id": text["bos_token_id"],
            "eos_token_id": text["eos_token_id"],
        },
    )
    return path


def _scale_init(model: torch.nn.Module) -> None:
    """Re-initialise weights at unit-variance-preserving scale (std 1/sqrt(fan_in), embeddings N(0,1)).

    With the default 0.02 init every block is a near-identity and the next token barely depends on
    the input, which would make exactness and policy tests unable to tell a broken stream from a good
    one; at this scale vision tokens and positions visibly change the logits.
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() < 2:
                continue
            if "embed_tokens" in name:
                param.normal_(0.0, 1.0)
            elif "lm_head" in name:
                param.normal_(0.0, 4.0 * param.shape[1] ** -0.5)  # peaked next-token distributions
            else:
                fan_in = param[0].numel()
                param.normal_(0.0, fan_in**-0.5)


def _patch_config(path: Path, fields: dict) -> None:
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(fields)
    cfg_path.write_text(json.dumps(cfg, indent=2))


GEMMA3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] in ('image', 'image_url') or 'image' in content %}<start_of_image>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_gemma3(path: str | Path, *, seed: int = 0, embed_scale: float = 0.05) -> Path:
    """A Gemma 3 VLM (SigLIP tower + Gemma 3 LM with plain 1D RoPE): the 1D-RoPE test architecture.

    Chosen because SGLang 0.5.23 builds its vision tower from config (no hub download) and it is a
    registered multimodal architecture; the LLaVA layouts do not fit (see docs/runtime-design.md).
    Served with `--enable-multimodal` (SGLang disables multimodal for Gemma 3 by default), greedy
    tokens and log-probs equal HF's to ~1e-6, for text, one image and several images, given:
    - the released models' layer pattern (5 sliding layers, then 1 global) with their two RoPE bases:
      sliding layers rotate with base 10,000 (`rope_local_base_freq`), global ones with `rope_theta` 1e6,
      so a re-rotation that used one base for every layer fails the stream oracles. The window (32768)
      is longer than any test stream, so sliding layers attend like global ones; only RoPE differs;
    - tied embeddings (SGLang's Gemma 3 always uses embed_tokens as the LM head);
    - `vision_use_head=False`, and vision weights saved under `vision_tower.vision_model.`
      (transformers 5 saves them flattened; SGLang loads the older layout);
    - `hidden_act="quick_gelu"` in the vision tower: SGLang's SigLIP hard-codes QuickGELU;
    - on the HF side, causal attention over image tokens (SGLang's CPU backend is causal; HF
      Gemma 3 attends bidirectionally inside an image block), see tests/e2e/hf_oracle.py.
    """
    from safetensors.torch import load_file, save_file
    from tokenizers import AddedToken
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        Gemma3TextConfig,
        PreTrainedTokenizerFast,
        SiglipVisionConfig,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    base = train_tokenizer(seed=seed)
    extra = {"boi_token": "<start_of_image>", "image_token": "<image_soft_token>", "eoi_token": "<end_of_image>"}
    base._tokenizer.add_special_tokens([AddedToken(t, special=True) for t in extra.values()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=base._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=extra, model_max_length=32768, chat_template=GEMMA3_CHAT_TEMPLATE)
    layers = 12
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=32768,
        sliding_window=32768, rope_theta=1e6, rope_local_base_freq=10_000.0, query_pre_attn_scalar=16,
        layer_types=["full_attention" if (l + 1) % 6 == 0 else "sliding_attention" for l in range(layers)],
        bos_token_id=_token_id(tokenizer, "<|endoftext|>"),
        eos_token_id=_token_id(tokenizer, "<|im_end|>"), pad_token_id=0, tie_word_embeddings=True)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, image_size=56, patch_size=14, vision_use_head=False,
                                # SGLang 0.5.23's SigLIP hard-codes QuickGELU whatever the config says.
                                hidden_act="quick_gelu")
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=16,
        boi_token_index=_token_id(tokenizer, "<start_of_image>"),
        eoi_token_index=_token_id(tokenizer, "<end_of_image>"),
        image_token_index=_token_id(tokenizer, "<image_soft_token>"), tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).to(DTYPE)
    _scale_init(model)
    # Gemma multiplies embeddings by sqrt(hidden) and ties the head to them: small embeddings keep the
    # residual stream from being dominated by the last input token, so answers depend on the images.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(embed_scale)
    model.save_pretrained(path, safe_serialization=True)
    weights = load_file(path / "model.safetensors")
    weights = {("vision_tower.vision_model." + k[len("vision_tower."):]
                if k.startswith("vision_tower.") and ".vision_model." not in k else k): v
               for k, v in weights.items()}
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": 56, "width": 56}),
                                tokenizer=tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=16)
    processor.save_pretrained(path)
    return path


LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] in ('image', 'image_url') or 'image' in content %}<image>"
    "{% elif content['type'] in ('video', 'video_url') or 'video' in content %}<video>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llava_onevision(path: str | Path, *, seed: int = 0, frame_side: int = 56) -> Path:
    """A LLaVA-OneVision (SigLIP tower + projector + Qwen2 LM with plain 1D RoPE), HF format.

    SGLang 0.5.23 has no native model for this architecture and serves it through its transformers
    backend (HF's own modeling code, SGLang attention), with the HF processor; a video's frames become
    2x2-pooled patch grids, ``frame_side`` 56 / patch 14 -> 4x4 patches -> 2x2 = 4 tokens a frame, plus
    one newline token per video. 12 Qwen2 layers so every HERMES tier exists; GQA 4/2 heads.
    """
    from tokenizers import AddedToken
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        PreTrainedTokenizerFast,
        Qwen2Config,
        SiglipVisionConfig,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    base = train_tokenizer(seed=seed)
    extra = {"image_token": "<image>", "video_token": "<video>"}
    base._tokenizer.add_special_tokens([AddedToken(t, special=True) for t in extra.values()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=base._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=extra, model_max_length=32768, chat_template=LLAVA_OV_CHAT_TEMPLATE)
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=12,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, rms_norm_eps=1e-6,
        bos_token_id=_token_id(tokenizer, "<|endoftext|>"), eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"), tie_word_embeddings=False)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=frame_side, patch_size=14, vision_use_head=False)
    config = LlavaOnevisionConfig(
        text_config=text, vision_config=vision, image_token_id=_token_id(tokenizer, "<image>"),
        video_token_id=_token_id(tokenizer, "<video>"), vision_feature_select_strategy="full",
        vision_feature_layer=-1, image_grid_pinpoints=[[frame_side, frame_side]], tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).to(DTYPE)
    _scale_init(model)
    model.save_pretrained(path, safe_serialization=True)
    size = {"height": frame_side, "width": frame_side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[frame_side, frame_side]]),
        video_processor=LlavaOnevisionVideoProcessor(size=size), tokenizer=tokenizer,
        num_image_tokens=(frame_side // 14) ** 2, vision_feature_select_strategy="full",
        chat_template=LLAVA_OV_CHAT_TEMPLATE)
    processor.save_pretrained(path)
    return path
