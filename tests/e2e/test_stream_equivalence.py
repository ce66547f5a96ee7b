"""A stream served by SGLang is the same computation as its independent oracles.

- Without compression: the stream equals ONE stateless request holding the same prefix, every chunk
  in order and the question (proves the stream clock and media offsets).
- With compression: after every append the kept positions per layer equal the HF reference
  streamer's, and the answers' greedy tokens and log-probs match it (proves scoring inside the
  append's forward or the score turns' — guidance modes ``block`` and ``passes``, each against the
  reference in the same mode —, the plan, the compaction kernel with re-rotation and summary, and
  re-indexing).
- The Triton kernels (forced on, interpreted) give the same stream as the torch path.

Tolerance: log-probs within 1e-4. Both sides run float32; they differ only in kernels (SGLang's
SDPA and pool vs HF eager attention, observed <= 3e-6). A wrong kept token, position or summary moves
the answer's log-probs by > 1e-2 (0.4 was seen while the scores were not captured).
"""

from __future__ import annotations

import httpx
import pytest
import torch

from sglang_hermes.config import HermesConfig
from sglang_hermes.layout import IMAGE_SEGMENTS, prefix_text, question_text
from sglang_hermes.model_facts import ModelFacts
from sglang_hermes.reference import ReferenceStreamer
from sglang_hermes.testing.native_stream import data_url, mp4_data_url
from sglang_hermes.testing.video import encode_mp4, encode_png

from .streams import MAX_TOKENS, QUESTIONS, as_served, chunks, close_logprobs, reference_run, run_stream

TOL = 1e-4
BUDGET = {"qwen": 40, "gemma": 60, "llava": 80}         # tokens per layer: 2, 1 and 1 chunks' worth, so most
                                                        # appends compress
LAZY_CLOCK = {"qwen": 45, "gemma": 160, "llava": 200}  # lazy re-indexing is made to trigger mid-stream, at this clock
MODEL_TYPE = {"qwen": "qwen2_5_vl", "gemma": "gemma3", "llava": "llava_onevision"}
ARCHS = sorted(MODEL_TYPE)


def config(arch: str, **fields) -> HermesConfig:
    """The stream config with the architecture's own defaults (LLaVA-OneVision's tier constants)."""
    return HermesConfig.for_architecture(MODEL_TYPE[arch], **fields)


@pytest.fixture
def served(request):
    arch = request.param
    return arch, request.getfixturevalue(f"{arch}_server"), request.getfixturevalue(f"{arch}_dir")


def stateless_answer(arch, server, client, video, question):
    if arch == "qwen":
        r = client.chat.completions.create(
            model="tiny", max_tokens=MAX_TOKENS, temperature=0, logprobs=True,
            messages=[{"role": "user", "content": [
                *[{"type": "video_url", "video_url": {"url": mp4_data_url(encode_mp4(c, fps=2.0))}} for c in video],
                {"type": "text", "text": question}]}])
        return r.choices[0].message.content, [t.logprob for t in r.choices[0].logprobs.content]
    frames = [f for c in video for f in c]
    out = httpx.post(f"{server.base_url}/generate", timeout=300, json={
        "text": prefix_text() + IMAGE_SEGMENTS[MODEL_TYPE[arch]] * len(frames) + question_text(question),
        "image_data": [data_url("image/png", encode_png(f)) for f in frames],
        "sampling_params": {"max_new_tokens": MAX_TOKENS, "temperature": 0}, "return_logprob": True}).json()
    return out["text"], [lp[0] for lp in out["meta_info"]["output_token_logprobs"]]


@pytest.mark.parametrize("served", ARCHS, indirect=True)
def test_without_compression_a_stream_equals_one_stateless_request(served, request):
    arch, server, model_dir = served
    client = request.getfixturevalue(f"{arch}_client") if arch == "qwen" else None
    video = chunks(arch, n=3, frames=4, seed=11)
    cfg = config(arch, budget_tokens=100_000)  # the hermes policy: guidance blocks ride along and are dropped
    run, _ = run_stream(server, model_dir, cfg, video, ask_after=())
    text, logprobs = stateless_answer(arch, server, client, video, QUESTIONS[1])
    assert run.answers[0][0] == text
    assert close_logprobs(run.answers[0][1], logprobs, TOL)
    assert run.states[-1]["compressions"] == 0


# Both re-indexing schemes and both guidance modes, each on every architecture, in two runs (not four: lean).
@pytest.mark.parametrize("reindex, guidance", [("lazy", "passes"), ("eager", "block")])
@pytest.mark.parametrize("served", ARCHS, indirect=True)
def test_compressed_stream_matches_the_hf_reference_streamer(served, reindex, guidance):
    arch, server, model_dir = served
    facts = ModelFacts.from_hf_config(__import__("transformers").AutoConfig.from_pretrained(model_dir))
    cfg = config(arch, budget_tokens=BUDGET[arch], reindex=reindex, guidance=guidance,
                 reindex_margin=facts.max_positions - LAZY_CLOCK[arch])
    video = chunks(arch)
    run, _ = run_stream(server, model_dir, cfg, video, ask_after=(2,))

    ref = ReferenceStreamer(model_dir, cfg)
    ref_answers = []
    for i, chunk in enumerate(video):
        ref.append(as_served(arch, chunk))
        state = run.states[i]
        assert state["memory_len"] == ref.cache_len == ref.prefix_len + min(len(ref.memory.positions[0]), cfg.budget_tokens)
        assert state["clock"] == ref.clock
        assert torch.equal(torch.tensor(state["positions"]), torch.stack(ref.memory.positions)), f"chunk {i}"
        assert state["is_summary"] == torch.stack(ref.memory.is_summary).tolist()
        if i == 2:
            ref_answers.append(ref.ask(QUESTIONS[0], MAX_TOKENS))
    ref_answers.append(ref.ask(QUESTIONS[1], MAX_TOKENS))

    assert run.states[-1]["compressions"] == ref.compressions >= 3
    assert run.states[-1]["reindexes"] >= 1
    assert any(any(row) for row in run.states[-1]["is_summary"])  # deep layers hold a summary token
    for (text, logprobs), want in zip(run.answers, ref_answers):
        assert text == want.text
        assert close_logprobs(logprobs, want.logprobs, TOL)


def test_triton_kernels_give_the_same_stream_as_the_hf_reference(qwen_triton_server, qwen_dir):
    cfg = HermesConfig(budget_tokens=BUDGET["qwen"])
    video = chunks("qwen", n=3)
    triton_run, _ = run_stream(qwen_triton_server, qwen_dir, cfg, video, ask_after=())
    ref = reference_run("qwen", qwen_dir, cfg, video, ask_after=())
    assert triton_run.states[-1]["compressions"] == ref.states[-1]["compressions"] == 1
    assert [s["positions"] for s in triton_run.states] == [s["positions"] for s in ref.states]
    assert triton_run.answers[0][0] == ref.answers[0][0]
    assert close_logprobs(triton_run.answers[0][1], ref.answers[0][1], TOL)
    calls = httpx.get(f"{qwen_triton_server.base_url}/server_info").json()["internal_states"][0]["hermes"]["kernel_calls"]
    assert calls.get("attention_mass:triton", 0) > 0 and calls.get("compact:triton", 0) > 0
    assert not any(k.endswith(":torch") for k in calls)
