"""The OpenAI-compatible sampler against real HTTP servers on loopback: our own server, a flaky one, a slow one."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.openai_http import HTTPSamplerError, OpenAISampler
from infertune.models.seeding import sample_keys, text_key
from infertune.models.tiny import TinyConfig, tiny_model
from infertune.serve import make_server


@pytest.fixture(scope="module")
def served():
    model, tok = tiny_model(TinyConfig(seed=4))
    server = make_server(HFSampler(model, tok), "tiny")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model, tok, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_completions_equal_the_local_sampler_with_the_derived_seeds(served):
    model, tok, url = served
    sampler = OpenAISampler("tiny", url, concurrency=4)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=7)
    first = sampler.sample(["3479:24=", "1+1="], params)
    second = sampler.sample(["1+1="], params)
    assert [c.text for c in first[1]] == [c.text for c in second[0]]  # independent of the rest of the batch
    assert len({c.text for c in first[0]}) > 1
    # Each request carries the seed derived from (seed, prompt, index); the server draws sample 0 with it.
    local = HFSampler(model, tok)
    seeds = sample_keys(7, np.full(3, text_key("3479:24="), dtype=np.uint64), np.arange(3))
    for c, seed in zip(first[0], seeds):
        expected = local.sample(["3479:24="], SamplingParams(n=1, temperature=1.0, max_new_tokens=12,
                                                             seed=int(seed % (1 << 31))))[0][0]
        assert c.text == expected.text and c.finish_reason == expected.finish_reason
        np.testing.assert_allclose(c.logprobs, expected.logprobs, atol=1e-6)


def test_chat_completions(served):
    _, _, url = served
    out = OpenAISampler("tiny", url, chat=True).sample(["hi"], SamplingParams(n=2, max_new_tokens=5))
    assert len(out[0]) == 2 and all(len(c.logprobs) >= 1 for c in out[0])


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first requests, then a fixed completion; counts concurrent requests."""

    protocol_version = "HTTP/1.1"
    failures_left = 0
    delay = 0.0
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    status_code = 503

    def log_message(self, *args):
        return

    def do_POST(self):
        cls = type(self)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
            fail = cls.failures_left > 0
            cls.failures_left -= fail
        try:
            time.sleep(cls.delay)
            if fail:
                payload, status = b'{"error": "busy"}', cls.status_code
            else:
                payload = json.dumps({"choices": [{"text": "ok", "finish_reason": "stop",
                                                   "logprobs": {"token_logprobs": [-0.5]}}]}).encode()
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(payload)
        finally:
            with cls.lock:
                cls.in_flight -= 1


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_retries_with_backoff_then_succeeds():
    handler = type("H", (_Flaky,), {"failures_left": 3, "delay": 0.0})
    server, url = _serve(handler)
    try:
        out = OpenAISampler("m", url, concurrency=1, backoff_s=0.01).sample(["p"], SamplingParams(n=1))
        assert out[0][0].text == "ok" and out[0][0].logprobs == [-0.5]
        assert handler.failures_left == 0
    finally:
        server.shutdown()


def test_gives_up_after_max_retries_and_does_not_retry_client_errors():
    server, url = _serve(type("H", (_Flaky,), {"failures_left": 100}))
    try:
        with pytest.raises(HTTPSamplerError, match="gave up after 3 attempts"):
            OpenAISampler("m", url, max_retries=2, backoff_s=0.01).sample(["p"], SamplingParams(n=1))
    finally:
        server.shutdown()
    bad = type("H", (_Flaky,), {"failures_left": 100, "status_code": 400})
    server, url = _serve(bad)
    try:
        with pytest.raises(HTTPSamplerError, match="HTTP 400"):
            OpenAISampler("m", url, max_retries=5, backoff_s=0.01).sample(["p"], SamplingParams(n=1))
        assert bad.failures_left == 99  # one request, no retry
    finally:
        server.shutdown()


def test_timeout_and_bounded_concurrency():
    slow = type("H", (_Flaky,), {"delay": 1.0})
    server, url = _serve(slow)
    try:
        with pytest.raises(HTTPSamplerError, match="gave up"):
            OpenAISampler("m", url, timeout_s=0.2, max_retries=1, backoff_s=0.01).sample(["p"], SamplingParams(n=1))
        time.sleep(1.2)  # let the slow handlers finish before counting again
        counted = type("H", (_Flaky,), {"delay": 0.1, "peak": 0})
        server2, url2 = _serve(counted)
        try:
            OpenAISampler("m", url2, concurrency=3).sample(["a", "b", "c", "d"], SamplingParams(n=3))
            assert counted.peak <= 3
        finally:
            server2.shutdown()
    finally:
        server.shutdown()
