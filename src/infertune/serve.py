"""Serve a local model over an OpenAI-compatible HTTP API (completions, chat completions, models).

Lets other tools (and infertune's own HTTP sampler) use a model sampled with infertune's shared-prefix sampler.
Single process, requests handled one at a time per model; meant for a laptop or a test, not for production traffic.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler


def make_server(sampler: HFSampler, model_name: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving); ``server.server_address`` has the port actually bound."""
    lock = threading.Lock()
    tokenizer = sampler.tokenizer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet by default
            return

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._reply(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                chat = self.path.rstrip("/").endswith("/chat/completions")
                if not chat and not self.path.rstrip("/").endswith("/completions"):
                    return self._reply(404, {"error": {"message": f"no route {self.path}"}})
                if chat:
                    messages = body["messages"]
                    if getattr(tokenizer, "chat_template", None):
                        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                    else:
                        prompt = "\n".join(m["content"] for m in messages)
                else:
                    prompt = body["prompt"]
                stop = body.get("stop") or []
                params = SamplingParams(n=int(body.get("n", 1)), temperature=float(body.get("temperature", 1.0)),
                                        top_p=float(body.get("top_p", 1.0)),
                                        max_new_tokens=int(body.get("max_tokens", 256)),
                                        stop=[stop] if isinstance(stop, str) else list(stop),
                                        seed=int(body.get("seed", 0)))
            except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
                return self._reply(400, {"error": {"message": f"bad request: {exc}"}})
            with lock:
                completions = sampler.sample([prompt], params)[0]
            choices = []
            for i, c in enumerate(completions):
                tokens = [tokenizer.decode([t]) for t in c.token_ids]
                if chat:
                    choices.append({"index": i, "finish_reason": c.finish_reason,
                                    "message": {"role": "assistant", "content": c.text},
                                    "logprobs": {"content": [{"token": t, "logprob": lp}
                                                             for t, lp in zip(tokens, c.logprobs)]}})
                else:
                    choices.append({"index": i, "finish_reason": c.finish_reason, "text": c.text,
                                    "logprobs": {"tokens": tokens, "token_logprobs": c.logprobs}})
            self._reply(200, {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()),
                              "object": "chat.completion" if chat else "text_completion", "model": model_name,
                              "choices": choices,
                              "usage": {"completion_tokens": sum(c.num_tokens for c in completions)}})

    return ThreadingHTTPServer((host, port), Handler)
