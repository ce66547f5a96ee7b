"""Client side of sglang-hermes: a Python helper over `openai` and the `hermes-stream` CLI."""
