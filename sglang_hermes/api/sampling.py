"""Sampling parameters checked for type and range before any generation route reaches the engine.

SGLang verifies some sampling values in its tokenizer manager, but not all, and not their size: a
``top_k`` of 2**40 (or 1e308) passes its checks and then kills the scheduler when the batch builds an
int32 tensor; ``stop: 5`` or ``top_p: "x"`` fail as TypeErrors (500); a ``top_logprobs_num`` or a
``logit_bias`` / ``stop_token_ids`` key beyond the vocabulary indexes past a tensor. One pydantic model
holds every sampling field any route takes, under every name the routes use (OpenAI's, SGLang's
``/generate`` names, Anthropic's, Ollama's), so the edge validates a body the same way whatever the
route, and the session's ask reads its parameters from the same model.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from sglang_hermes.api.errors import ApiError

INT32_MAX = 2**31 - 1
TOP_K_ALL = 1 << 30          # SGLang's "whole vocabulary" (sampling_params.TOP_K_ALL)
MAX_STOP = 32                # SGLang's MAX_STOP_COUNT
MAX_TOP_LOGPROBS = 20        # OpenAI's documented maximum
MAX_N = 128
MAX_TOKEN_LIST = 4096        # entries of stop_token_ids / logit_bias / token_ids_logprob
DEFAULT_ASK_TOKENS = 256

Tokens = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]
Count = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
TokenId = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
Penalty = Annotated[StrictFloat, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
Probability = Annotated[StrictFloat, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Seed = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=MAX_STOP)]


class SamplingFields(BaseModel):
    """Every sampling field a generation route of hermes-serve reads, with the range it may take.

    Unknown fields are left to the route (``extra="ignore"``): this model only refuses values of the
    fields it names, and ``None`` always means "the route's default".
    """

    model_config = ConfigDict(extra="ignore")

    temperature: Annotated[StrictFloat, Field(ge=0.0, le=100.0, allow_inf_nan=False)] | None = None
    top_p: Annotated[StrictFloat, Field(gt=0.0, le=1.0, allow_inf_nan=False)] | None = None
    top_k: Annotated[StrictInt, Field(ge=-1, le=TOP_K_ALL)] | None = None
    min_p: Probability | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repetition_penalty: Annotated[StrictFloat, Field(gt=0.0, le=2.0, allow_inf_nan=False)] | None = None
    # OpenAI, SGLang, Responses and Ollama names of the generation length.
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    max_output_tokens: Tokens | None = None
    max_new_tokens: Count | None = None
    num_predict: Annotated[StrictInt, Field(ge=-2, le=INT32_MAX)] | None = None
    min_tokens: Count | None = None
    min_new_tokens: Count | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] | None = None
    best_of: Annotated[StrictInt, Field(ge=1, le=MAX_N)] | None = None
    beam_width: Annotated[StrictInt, Field(ge=1, le=MAX_N)] | None = None
    stop: Stop | None = None
    stop_sequences: Annotated[list[StrictStr], Field(max_length=MAX_STOP)] | None = None
    stop_regex: Stop | None = None
    stop_token_ids: Annotated[list[TokenId], Field(max_length=MAX_TOKEN_LIST)] | None = None
    seed: Seed | None = None
    sampling_seed: Seed | None = None
    logit_bias: Annotated[dict[StrictStr, Annotated[StrictFloat, Field(ge=-100.0, le=100.0, allow_inf_nan=False)]],
                          Field(max_length=MAX_TOKEN_LIST)] | None = None
    logprobs: StrictBool | Annotated[StrictInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    top_logprobs_num: Annotated[StrictInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    token_ids_logprob: Annotated[list[TokenId], Field(max_length=MAX_TOKEN_LIST)] | None = None
    ignore_eos: StrictBool | None = None

    def token_ids(self) -> dict[str, list[int]]:
        """Token ids named by the request, by field, to check against the vocabulary."""
        out = {"stop_token_ids": self.stop_token_ids or [], "token_ids_logprob": self.token_ids_logprob or []}
        keys = []
        for key in self.logit_bias or {}:
            if not key.strip().isdigit():
                raise ApiError(400, f"logit_bias keys must be token ids (integers as strings), got {key!r}",
                               param="logit_bias")
            keys.append(int(key))
        out["logit_bias"] = keys
        return out


def validate(fields: object, where: str = "", vocab_size: int | None = None) -> SamplingFields:
    """``fields`` (a JSON object of sampling values) checked; a 400 naming the first bad field.

    ``where`` prefixes the field's name in ``param`` (``sampling_params.`` for ``/generate``).
    """
    if not isinstance(fields, dict):
        raise ApiError(400, f"{where.rstrip('.') or 'the body'} must be a JSON object", param=where.rstrip(".") or None)
    try:
        checked = SamplingFields.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        name = where + ".".join(str(x) for x in first["loc"][:1])
        raise ApiError(400, f"{name}: {first['msg']} (got {_short(first.get('input'))})", param=name) from None
    limit = vocab_size if vocab_size else INT32_MAX + 1
    for name, ids in checked.token_ids().items():
        bad = next((i for i in ids if not 0 <= i < limit), None)
        if bad is not None:
            raise ApiError(400, f"{where}{name}: token id {bad} is outside the vocabulary [0, {limit})",
                           param=where + name)
    return checked


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def ask_sampling(body: dict, vocab_size: int | None = None) -> tuple[int, dict]:
    """A session ask's (max new tokens, SGLang sampling params) from its OpenAI chat body.

    ``max_completion_tokens`` wins over ``max_tokens`` as in OpenAI's API; 0 is refused (an answer is
    at least one token), never read as "unset".
    """
    f = validate(body, vocab_size=vocab_size)
    max_tokens = next((v for v in (f.max_completion_tokens, f.max_tokens) if v is not None), DEFAULT_ASK_TOKENS)
    sampling = {name: getattr(f, name) for name in ("temperature", "top_p", "top_k", "min_p", "frequency_penalty",
                                                    "presence_penalty", "repetition_penalty", "stop",
                                                    "stop_token_ids", "logit_bias")
                if getattr(f, name) is not None}
    if f.min_tokens is not None:
        sampling["min_new_tokens"] = f.min_tokens
    if f.seed is not None:
        sampling["sampling_seed"] = f.seed
    return max_tokens, sampling
