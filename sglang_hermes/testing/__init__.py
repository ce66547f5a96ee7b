"""Offline test fixtures: tiny random-weight checkpoints of real VLM architectures and synthetic video.

No weights can be downloaded on CI, so tests build real-architecture checkpoints (real tokenizer,
real processor, real config) with random weights in seconds. Both HF transformers and SGLang load them.
"""
