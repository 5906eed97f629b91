"""`infertune serve` driven by the official openai client: models, chat, completions, n > 1, streaming, logprobs,
usage, stop sequences and refusals."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.tiny import TinyConfig, tiny_model
from infertune.serve import make_server

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def served():
    model, tok = tiny_model(TinyConfig(seed=4))
    sampler = HFSampler(model, tok)
    server = make_server(sampler, "tiny")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield sampler, tok, url, openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
    server.shutdown()
    server.server_close()


def test_models_and_completions_with_n_usage_and_logprobs(served):
    sampler, tok, _, client = served
    assert [m.id for m in client.models.list()] == ["tiny"]
    out = client.completions.create(model="tiny", prompt="3479:24=", n=3, max_tokens=12, seed=7, logprobs=2)
    local = sampler.sample(["3479:24="], SamplingParams(n=3, max_new_tokens=12, seed=7, top_logprobs=2))[0]
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert [c.text for c in out.choices] == [c.text for c in local]
    assert out.usage.prompt_tokens == len(tok("3479:24=")["input_ids"])
    assert out.usage.completion_tokens == sum(len(c.token_ids) for c in local)
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    for choice, c in zip(out.choices, local):
        assert choice.logprobs.token_logprobs == pytest.approx(c.logprobs, abs=1e-6)
        assert len(choice.logprobs.tokens) == len(c.token_ids)
        assert all(len(top) == 2 and max(top.values()) >= lp - 1e-6
                   for top, lp in zip(choice.logprobs.top_logprobs, choice.logprobs.token_logprobs))
        assert choice.finish_reason in ("stop", "length")


def test_a_list_of_prompts_gets_n_choices_each(served):
    _, _, _, client = served
    out = client.completions.create(model="tiny", prompt=["1+1=", "2+2="], n=2, max_tokens=4, seed=1)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]


def test_chat_with_n_logprobs_and_top_logprobs(served):
    _, _, _, client = served
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], n=2,
                                         max_tokens=6, logprobs=True, top_logprobs=3, seed=3)
    assert len(out.choices) == 2 and out.usage.prompt_tokens > 0
    for choice in out.choices:
        assert choice.message.role == "assistant"
        content = choice.logprobs.content
        assert 1 <= len(content) <= 6
        assert all(len(t.top_logprobs) == 3 for t in content)
        assert all(t.logprob <= 0 for t in content)
    assert out.usage.completion_tokens == sum(len(c.logprobs.content) for c in out.choices)


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_gives_the_same_text_as_a_whole_answer(served, chat):
    _, _, _, client = served
    kwargs = dict(model="tiny", n=3, max_tokens=16, seed=5, stop=["7"])
    if chat:
        kwargs["messages"] = [{"role": "user", "content": "count: 1 2 3"}]
        whole = client.chat.completions.create(**kwargs)
        stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    else:
        kwargs["prompt"] = "count: 1 2 3"
        whole = client.completions.create(**kwargs)
        stream = client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    texts, finish, usage, chunks = {}, {}, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            piece = (c.delta.content or "") if chat else c.text
            texts[c.index] = texts.get(c.index, "") + piece
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    expected = {c.index: (c.message.content if chat else c.text) for c in whole.choices}
    assert texts == expected
    assert finish == {c.index: c.finish_reason for c in whole.choices}
    assert chunks > 3  # token by token, not one block
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert all("7" not in t for t in texts.values())


def test_the_event_stream_ends_with_done(served):
    _, _, url, _ = served
    body = json.dumps({"model": "tiny", "prompt": "ab", "max_tokens": 3, "stream": True}).encode()
    request = urllib.request.Request(url + "/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in response.read().decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-1])
    assert json.loads(events[0][6:])["object"] == "text_completion"


def test_stop_sequences_end_a_sample(served):
    _, _, _, client = served
    out = client.completions.create(model="tiny", prompt="abc", n=8, max_tokens=30, stop=["e", "1"], seed=2)
    assert any(c.finish_reason == "stop" for c in out.choices)
    assert all("e" not in c.text and "1" not in c.text for c in out.choices)


@pytest.mark.parametrize("extra, message", [
    ({"logit_bias": {"5": 10}}, "logit_bias"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"echo": True}, "echo"),
    ({"prompt": [1, 2, 3]}, "token ids"),
    ({"logprobs": 9}, "logprobs"),
    ({"n": 0}, "n must be"),
])
def test_unsupported_requests_get_a_clear_400(served, extra, message):
    _, _, _, client = served
    args = {"model": "tiny", "prompt": "x", "max_tokens": 2, **extra}
    with pytest.raises(openai.BadRequestError, match=message):
        client.completions.create(**args)


def test_chat_refusals_and_unknown_model(served):
    _, _, _, client = served
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], tools=[
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    with pytest.raises(openai.BadRequestError, match="image_url"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    with pytest.raises(openai.BadRequestError, match="frobnicate"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"frobnicate": 1})
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
