"""Session-wide fixtures: tiny checkpoints built once, and real hermes-serve processes on them."""

from __future__ import annotations

import openai
import pytest

from sglang_hermes.testing.server import HermesServer
from sglang_hermes.testing.tiny_models import build_tiny_gemma3, build_tiny_qwen2_5_vl


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="session")
def qwen_server(qwen_dir, tmp_path_factory):
    """One real hermes-serve on the tiny Qwen2.5-VL for the whole session; always stopped."""
    log = tmp_path_factory.mktemp("logs") / "qwen-server.log"
    server = HermesServer(qwen_dir, extra_args=["--enable-streaming-session", "--dtype", "float32"], log_path=log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qwen_client(qwen_server):
    return openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory):
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def gemma_server(gemma_dir, tmp_path_factory):
    """A real hermes-serve on the tiny 1D-RoPE model (Gemma 3)."""
    log = tmp_path_factory.mktemp("logs") / "gemma-server.log"
    server = HermesServer(gemma_dir, log_path=log,
                          extra_args=["--enable-streaming-session", "--dtype", "float32", "--enable-multimodal"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gemma_client(gemma_server):
    return openai.OpenAI(base_url=f"{gemma_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
