"""A sampler for OpenAI-compatible HTTP servers (vLLM, SGLang, llama.cpp, TGI, ...), completions or chat.

Each sample is its own request with n=1 and a seed derived from (seed, prompt, sample index), so a sample does not
depend on batching and a resumed run asks only for what is missing; servers with prefix caching (vLLM, SGLang)
still compute each prompt once. Requests run with bounded concurrency, a timeout, and retries with exponential
backoff on connection errors, 408, 429 and 5xx (honouring Retry-After). Standard library only.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from infertune.models.base import Completion, SamplingParams
from infertune.models.seeding import sample_keys, text_key

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class HTTPSamplerError(RuntimeError):
    """A request that failed for good (after retries, or with an error the server will not change its mind on)."""


class OpenAISampler:
    def __init__(self, model: str, base_url: str, *, chat: bool = False, api_key: str | None = None,
                 system: str | None = None, concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 5,
                 backoff_s: float = 0.5) -> None:
        self.name = model
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.chat = chat
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.system = system
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        indices = np.arange(params.start_index, params.start_index + params.n)
        jobs = []
        for p, prompt in enumerate(prompts):
            seeds = sample_keys(params.seed, np.full(params.n, text_key(prompt), dtype=np.uint64), indices)
            for j, seed in enumerate(seeds):
                jobs.append((p, j, prompt, int(seed % (1 << 31))))
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for (p, j, _, _), completion in zip(jobs, pool.map(lambda job: self._one(job[2], job[3], params),
                                                                jobs)):
                completion.index = int(indices[j])
                results[p][j] = completion
        return results  # type: ignore[return-value]

    def _one(self, prompt: str, seed: int, params: SamplingParams) -> Completion:
        body: dict = {"model": self.model, "n": 1, "temperature": params.temperature, "top_p": params.top_p,
                      "max_tokens": params.max_new_tokens, "seed": seed}
        if params.stop:
            body["stop"] = list(params.stop)
        if self.chat:
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
                {"role": "user", "content": prompt}]
            body.update(messages=messages, logprobs=True)
            data = self._post("/chat/completions", body)
            choice = data["choices"][0]
            content = (choice.get("logprobs") or {}).get("content") or []
            return Completion(text=choice["message"].get("content") or "", token_ids=[],
                              logprobs=[float(t["logprob"]) for t in content],
                              finish_reason=_finish(choice.get("finish_reason")))
        body.update(prompt=prompt, logprobs=1)
        data = self._post("/completions", body)
        choice = data["choices"][0]
        token_lp = (choice.get("logprobs") or {}).get("token_logprobs") or []
        return Completion(text=choice.get("text") or "", token_ids=[],
                          logprobs=[float(x) for x in token_lp if x is not None],
                          finish_reason=_finish(choice.get("finish_reason")))

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last_error = f"HTTP {exc.code} from {url}: {detail}"
                if exc.code not in RETRY_STATUS:
                    raise HTTPSamplerError(last_error) from exc
                retry_after = exc.headers.get("Retry-After")
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last_error = f"{url}: {exc}"
            except json.JSONDecodeError as exc:
                raise HTTPSamplerError(f"{url}: the reply is not JSON ({exc})") from exc
            if attempt < self.max_retries:
                delay = self.backoff_s * (2**attempt) * (0.5 + random.random())
                if retry_after:
                    try:
                        delay = max(delay, float(retry_after))
                    except ValueError:
                        pass
                time.sleep(min(delay, 60.0))
        raise HTTPSamplerError(f"gave up after {self.max_retries + 1} attempts: {last_error}")


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"
