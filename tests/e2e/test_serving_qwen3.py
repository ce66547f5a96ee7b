"""The tiny Qwen3-VL served by hermes-serve matches HF transformers: an image, a video stamped by SGLang
(from 0 s), and a video stamped at stream times (``protocol.VideoTimes``, how a stream's chunk says
where it sits). Interleaved M-RoPE, the timestamp text and DeepStack are all inside these forwards;
the server prefills in chunks of 48 tokens, so the videos here span several forwards."""

from __future__ import annotations

import httpx
from PIL import Image

from sglang_hermes.layout import VIDEO_SEGMENT, prefix_text, question_text
from sglang_hermes.protocol import VIDEO_TIMES_KEY, VideoTimes
from sglang_hermes.testing.native_stream import mp4_data_url
from sglang_hermes.testing.video import decode_frames, encode_mp4, encode_png, synthetic_frames

from . import hf_oracle
from .test_serving import MAX_TOKENS, assert_same_greedy, data_url, served_greedy

QUESTION = "What happens in the video?"


def _generate(server, text: str, videos: list[bytes], custom_params: dict | None = None) -> httpx.Response:
    params = {"max_new_tokens": MAX_TOKENS, "temperature": 0, **({"custom_params": custom_params} if custom_params else {})}
    return httpx.post(f"{server.base_url}/generate", timeout=300, json={
        "text": text, "video_data": [mp4_data_url(m) for m in videos], "sampling_params": params,
        "return_logprob": True})


def test_image_request_matches_hf(qwen3_client, qwen3_dir):
    frame = synthetic_frames(1, size=336, seed=0)[0]
    served = served_greedy(qwen3_client, [
        {"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(frame))}},
        {"type": "text", "text": "What is in the picture?"}])
    oracle = hf_oracle.greedy(qwen3_dir, [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "What is in the picture?"}]}], MAX_TOKENS,
        images=[Image.fromarray(frame)])
    assert_same_greedy(served, oracle)


def test_video_url_request_matches_hf(qwen3_client, qwen3_dir):
    """Stock behaviour: SGLang stamps a video's patches with the video's own time, from 0."""
    from transformers.video_utils import VideoMetadata  # imports triton: not at collection (tests/kernels)

    mp4 = encode_mp4(synthetic_frames(4, size=336, seed=3), fps=2.0)
    served = served_greedy(qwen3_client, [
        {"type": "video_url", "video_url": {"url": data_url("video/mp4", mp4)}}, {"type": "text", "text": QUESTION}])
    frames = decode_frames(mp4)
    oracle = hf_oracle.greedy(qwen3_dir, [{"role": "user", "content": [
        {"type": "video"}, {"type": "text", "text": QUESTION}]}], MAX_TOKENS, videos=[frames], do_sample_frames=False,
        video_metadata=[VideoMetadata(total_num_frames=len(frames), fps=2.0, frames_indices=list(range(len(frames))))])
    assert served[2].prompt_tokens_details.video_tokens == 2 * 16  # 4 frames: 2 temporal patches of 4x4 merged
    assert_same_greedy(served, oracle)


def test_frame_times_stamp_each_video_at_its_stream_time_as_hf_does(qwen3_server, qwen3_dir):
    """Two chunks at 10-11.5 s of a stream: the server writes "<10.2 seconds>" ... "<11.2 seconds>" (HF's
    processor given the same frame times), not each video's own 0.2 s; greedy tokens and log-probs equal HF's."""
    mp4s = [encode_mp4(synthetic_frames(2, size=336, seed=s), fps=2.0) for s in (3, 4)]
    times = [[10.0, 10.5], [11.0, 11.5]]
    text = prefix_text() + VIDEO_SEGMENT * 2 + question_text(QUESTION)
    served = _generate(qwen3_server, text, mp4s, VideoTimes(videos=times).custom_params()).json()
    stock = _generate(qwen3_server, text, mp4s).json()

    from transformers.video_utils import VideoMetadata  # imports triton: not at collection (tests/kernels)

    processor, model = hf_oracle.load(str(qwen3_dir))
    inputs = processor(text=[text], videos=[decode_frames(m) for m in mp4s], do_sample_frames=False,
                       video_metadata=[VideoMetadata(total_num_frames=2, fps=1.0, frames_indices=t) for t in times],
                       return_tensors="pt")
    rendered = processor.tokenizer.decode(inputs["input_ids"][0])
    assert "<10.2 seconds>" in rendered and "<11.2 seconds>" in rendered
    assert served["meta_info"]["prompt_tokens"] == inputs["input_ids"].shape[1]
    assert stock["meta_info"]["prompt_tokens"] != served["meta_info"]["prompt_tokens"]  # "<0.2 seconds>" twice
    oracle = hf_oracle.greedy_from_inputs(str(qwen3_dir), inputs, MAX_TOKENS)
    logprobs = [lp[0] for lp in served["meta_info"]["output_token_logprobs"]]
    assert_same_greedy((served["text"], logprobs, None), oracle)


def test_frame_times_that_do_not_fit_the_videos_are_refused(qwen3_server):
    mp4 = encode_mp4(synthetic_frames(2, size=336, seed=3), fps=2.0)
    text = prefix_text() + VIDEO_SEGMENT + question_text(QUESTION)
    for times, message in (([[0.0, 0.5], [1.0, 1.5]], "for 2 videos"), ([[0.0, 0.5, 1.0]], "2 frames and 3 frame times")):
        r = _generate(qwen3_server, text, [mp4], VideoTimes(videos=times).custom_params())
        assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    r = _generate(qwen3_server, text, [mp4], {VIDEO_TIMES_KEY: '{"videos": [[1.0, "nan"]]}'})
    assert r.status_code == 400, r.text
    assert _generate(qwen3_server, text, [mp4]).status_code == 200
