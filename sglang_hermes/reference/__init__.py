"""An HF-transformers streamer running the same policy: the oracle for the SGLang runtime's tests."""

from sglang_hermes.reference.streamer import Answer, ReferenceStreamer

__all__ = ["Answer", "ReferenceStreamer"]
