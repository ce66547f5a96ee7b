"""Client side of sglang-hermes: a Python helper over `openai` and the `hermes-stream` CLI.

    from clients import HermesClient
    with HermesClient("http://127.0.0.1:30000/v1").open_stream(budget_tokens=4096) as s:
        s.append(frames, timestamps=[0.0, 1.0])
        print(s.ask("What happened?").text)
"""

from clients.frames import VideoError, encode_image, image_part, sample_video, video_info, video_part
from clients.session import AnswerStream, Answer, AppendResult, HermesClient, Stream, error_message

__all__ = ["HermesClient", "Stream", "AppendResult", "Answer", "AnswerStream", "error_message",
           "VideoError", "encode_image", "image_part", "video_part", "sample_video", "video_info"]
