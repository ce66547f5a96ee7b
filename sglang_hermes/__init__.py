"""sglang-hermes: live video for vision-language models on SGLang, with HERMES-compressed per-stream KV."""

__version__ = "0.1.0"
