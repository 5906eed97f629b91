"""Translation between OpenAI's completions and chat-completions JSON and infertune's sampling, with no I/O.

``parse_request`` turns a request body into a ``Request`` (prompts and ``SamplingParams``) or raises ``APIError``
with the status and message the client should see; ``response``, ``chunk`` and ``usage`` build the JSON the
OpenAI API defines (https://platform.openai.com/docs/api-reference), for whole answers and for streamed ones.
Anything this server cannot honour (tools, logit bias, penalties, echo, images, token-id prompts, ...) is refused
with a 400 naming it, rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infertune.models.base import Completion, SamplingParams

# Every parameter this server knows; the ones it cannot honour are refused by value in _refuse_unsupported.
_KNOWN = {"model", "user", "store", "metadata", "service_tier", "parallel_tool_calls", "stream_options",
            "modalities", "seed", "stream", "n", "temperature", "top_p", "max_tokens", "stop", "logprobs",
            "top_logprobs", "max_completion_tokens", "prompt", "messages", "best_of", "echo", "logit_bias",
            "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice", "functions",
            "function_call", "suffix"}
MAX_TOP_LOGPROBS = {"chat": 20, "completions": 5}


class APIError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI-style error body to answer with."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass
class Request:
    """What a request asks for, in infertune's terms."""

    chat: bool
    prompts: list[str]
    params: SamplingParams
    stream: bool
    include_usage: bool  # streamed: a last chunk with the usage
    logprobs: bool  # report per-token log-probs
    top_logprobs: int


def _refuse_unsupported(body: dict, chat: bool) -> None:
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise APIError(400, f"unsupported parameter(s): {', '.join(unknown)}", param=unknown[0])
    for name in ("tools", "functions", "tool_choice", "function_call"):
        if body.get(name) not in (None, [], "none"):
            raise APIError(400, f"{name} is not supported: this server samples plain text", param=name)
    if body.get("logit_bias"):
        raise APIError(400, "logit_bias is not supported", param="logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise APIError(400, f"{name} is not supported (only 0)", param=name)
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise APIError(400, "response_format other than text is not supported", param="response_format")
    modalities = body.get("modalities")
    if modalities not in (None, ["text"]):
        raise APIError(400, "only the text modality is supported", param="modalities")
    if not chat:
        if body.get("echo"):
            raise APIError(400, "echo is not supported", param="echo")
        if body.get("suffix"):
            raise APIError(400, "suffix (insertion) is not supported", param="suffix")
        if body.get("best_of") not in (None, body.get("n", 1)):
            raise APIError(400, "best_of is not supported (ask for n samples and choose among them)",
                           param="best_of")


def _chat_text(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise APIError(400, f"messages[{i}] needs a role and content", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text":
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise APIError(400, f"messages[{i}]: content of type {kind!r} is not supported (text only)",
                                   param="messages")
                parts.append(str(part.get("text", "")))
            content = "".join(parts)
        if not isinstance(content, str):
            raise APIError(400, f"messages[{i}]: content must be text", param="messages")
        out.append({"role": m["role"], "content": content})
    return out


def parse_request(body: Any, *, chat: bool, model_name: str, tokenizer) -> Request:
    """A request body to a ``Request``; raises ``APIError`` for what is malformed or unsupported."""
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    _refuse_unsupported(body, chat)
    model = body.get("model")
    if model is not None and model != model_name:
        raise APIError(404, f"the model {model!r} does not exist; this server has {model_name!r}", param="model",
                       code="model_not_found")
    if chat:
        messages = _chat_text(body.get("messages"))
        if getattr(tokenizer, "chat_template", None):
            prompts = [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)]
        else:
            prompts = ["\n".join(m["content"] for m in messages)]
        logprobs = bool(body.get("logprobs"))
        top = body.get("top_logprobs") or 0
        if top and not logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        else:
            raise APIError(400, "prompt must be a string or a list of strings (token ids are not supported)",
                           param="prompt")
        raw = body.get("logprobs")
        logprobs, top = raw is not None and raw is not False, int(raw or 0)
    kind = "chat" if chat else "completions"
    if not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS[kind]:
        name = "top_logprobs" if chat else "logprobs"
        raise APIError(400, f"{name} must be an integer from 0 to {MAX_TOP_LOGPROBS[kind]}", param=name)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise APIError(400, "stop must be a non-empty string or a list of up to 4 of them", param="stop")
    max_tokens = body.get("max_completion_tokens") if chat else None
    max_tokens = max_tokens if max_tokens is not None else body.get("max_tokens")
    options = body.get("stream_options") or {}
    try:
        temperature = float(body["temperature"]) if body.get("temperature") is not None else 1.0
        if temperature > 2:
            raise ValueError(f"temperature must be at most 2, got {temperature}")
        params = SamplingParams(n=int(body["n"]) if body.get("n") is not None else 1, temperature=temperature,
                                top_p=float(body["top_p"]) if body.get("top_p") is not None else 1.0,
                                max_new_tokens=int(max_tokens) if max_tokens is not None else 256,
                                stop=list(stop), seed=int(body.get("seed") or 0), top_logprobs=top)
    except (TypeError, ValueError) as exc:
        raise APIError(400, str(exc)) from exc
    return Request(chat=chat, prompts=prompts, params=params, stream=bool(body.get("stream")),
                   include_usage=bool(options.get("include_usage")), logprobs=logprobs, top_logprobs=top)


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _piece(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


def chat_logprobs(tokenizer, token_ids: list[int], logprobs: list[float], tops: list[dict[int, float]]) -> dict:
    """The ``logprobs`` object of a chat choice (or of a streamed chunk's tokens)."""
    def entry(token_id: int, lp: float) -> dict:
        text = _piece(tokenizer, token_id)
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

    content = []
    for j, (t, lp) in enumerate(zip(token_ids, logprobs)):
        item = entry(t, lp)
        item["top_logprobs"] = [entry(a, b) for a, b in tops[j].items()] if j < len(tops) else []
        content.append(item)
    return {"content": content, "refusal": None}


def completion_logprobs(tokenizer, token_ids: list[int], logprobs: list[float], tops: list[dict[int, float]],
                        offset: int = 0) -> dict:
    """The ``logprobs`` object of a completions choice; ``offset`` is the text offset of the first token."""
    pieces = [_piece(tokenizer, t) for t in token_ids]
    offsets = []
    for p in pieces:
        offsets.append(offset)
        offset += len(p)
    top = [{_piece(tokenizer, a): b for a, b in tops[j].items()} for j in range(len(pieces))] if tops else None
    return {"tokens": pieces, "token_logprobs": logprobs, "top_logprobs": top, "text_offset": offsets}


def choice(request: Request, tokenizer, index: int, c: Completion) -> dict:
    """One whole choice."""
    lp = None
    if request.logprobs:
        tops = c.top_logprobs if request.top_logprobs else []
        lp = (chat_logprobs if request.chat else completion_logprobs)(tokenizer, c.token_ids, c.logprobs, tops)
    if request.chat:
        return {"index": index, "finish_reason": c.finish_reason, "logprobs": lp,
                "message": {"role": "assistant", "content": c.text, "refusal": None}}
    return {"index": index, "finish_reason": c.finish_reason, "text": c.text, "logprobs": lp}


def response(request: Request, tokenizer, ident: str, created: int, model: str, choices: list[dict],
             used: dict) -> dict:
    return {"id": ident, "object": "chat.completion" if request.chat else "text_completion", "created": created,
            "model": model, "choices": choices, "usage": used}


def chunk(request: Request, ident: str, created: int, model: str, choices: list[dict],
          used: dict | None = None) -> dict:
    """One server-sent event's payload."""
    out = {"id": ident, "object": "chat.completion.chunk" if request.chat else "text_completion",
           "created": created, "model": model, "choices": choices}
    if request.include_usage:
        out["usage"] = used
    return out


def chunk_choice(request: Request, index: int, text: str | None, logprobs: dict | None,
                 finish_reason: str | None, first: bool = False) -> dict:
    """One choice of a streamed chunk: a delta for chat, a text piece for completions."""
    if request.chat:
        delta: dict = {"role": "assistant", "content": text or ""} if first else (
            {"content": text} if text else {})
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
    return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish_reason}


class TextStream:
    """The text of one streamed sample, handed out as it becomes final.

    A token can end in the middle of a UTF-8 character, and the last characters may be the start of a stop string
    that the next token completes; both are held back until they are settled, so the concatenated deltas equal the
    whole answer's text exactly.
    """

    def __init__(self, tokenizer, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.ids: list[int] = []
        self.sent = ""

    def push(self, token_id: int, completion: Completion | None) -> str:
        """The new text after this token (``completion``: the finished sample, on its last token)."""
        self.ids.append(token_id)
        if completion is not None:
            text = completion.text
        else:
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                return ""
            text = text[: len(text) - self.hold] if self.hold else text
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta
