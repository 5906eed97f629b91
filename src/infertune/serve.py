"""Serve a local model over an OpenAI-compatible HTTP API (models, completions, chat completions).

Lets other tools (the official ``openai`` client, infertune's own HTTP sampler) use a model sampled with infertune's
shared-prefix sampler: n samples per request, streaming as server-sent events, usage, log-probs with top
alternatives, stop sequences; what it cannot do is refused with a 400 (see ``openai_api``). Single process,
requests handled one at a time; meant for a laptop or a test, not for production traffic.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infertune import openai_api as api
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

        def _route(self) -> str | None:
            path = self.path.split("?", 1)[0].rstrip("/")
            for route in ("/chat/completions", "/completions", "/models"):
                if path.endswith(route):
                    return route
            return None

        def do_GET(self) -> None:
            if self._route() == "/models":
                self._reply(200, {"object": "list", "data": [{"id": model_name, "object": "model",
                                                              "created": 0, "owned_by": "infertune"}]})
            else:
                self._reply(404, api.APIError(404, f"no route {self.path}").body())

        def do_POST(self) -> None:
            route = self._route()
            if route not in ("/chat/completions", "/completions"):
                return self._reply(404, api.APIError(404, f"no route {self.path}").body())
            try:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as exc:
                    raise api.APIError(400, f"the body is not JSON: {exc}") from exc
                request = api.parse_request(body, chat=route == "/chat/completions", model_name=model_name,
                                            tokenizer=tokenizer)
                prompt_tokens = [len(ids) for ids in sampler.encode(request.prompts)]
                if not all(prompt_tokens):
                    raise api.APIError(400, "a prompt encodes to no tokens", param="prompt")
            except api.APIError as exc:
                return self._reply(exc.status, exc.body())
            ident = f"{'chatcmpl' if request.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            with lock:
                if request.stream:
                    self._stream(request, ident, created, sum(prompt_tokens))
                else:
                    self._whole(request, ident, created, sum(prompt_tokens))

        def _whole(self, request: api.Request, ident: str, created: int, prompt_tokens: int) -> None:
            try:
                out = sampler.sample(request.prompts, request.params)
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, the server keeps serving
                return self._reply(500, api.APIError(500, f"sampling failed: {exc}").body())
            n = request.params.n
            choices = [api.choice(request, tokenizer, p * n + j, c) for p, cs in enumerate(out)
                       for j, c in enumerate(cs)]
            used = api.usage(prompt_tokens, sum(c.num_tokens for cs in out for c in cs))
            self._reply(200, api.response(request, tokenizer, ident, created, model_name, choices, used))

        def _stream(self, request: api.Request, ident: str, created: int, prompt_tokens: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")  # the end of the stream is the end of the connection
            self.end_headers()
            self.close_connection = True

            def send(payload: dict | str) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            n, completion_tokens = request.params.n, 0
            texts: dict[int, api.TextStream] = {}
            try:
                for event in sampler.stream(request.prompts, request.params):
                    index = event.prompt * n + event.sample
                    first = index not in texts
                    if first:
                        texts[index] = api.TextStream(tokenizer, request.params.stop)
                    delta = texts[index].push(event.token_id, event.completion)
                    completion_tokens += 1
                    lp = None
                    if request.logprobs:
                        tops = [event.top_logprobs] if request.top_logprobs else []
                        make = api.chat_logprobs if request.chat else api.completion_logprobs
                        lp = make(tokenizer, [event.token_id], [event.logprob], tops)
                    if first or delta or lp is not None or event.finish_reason:
                        part = api.chunk_choice(request, index, delta, lp, event.finish_reason, first=first)
                        send(api.chunk(request, ident, created, model_name, [part]))
                if request.include_usage:
                    send(api.chunk(request, ident, created, model_name, [],
                                   api.usage(prompt_tokens, completion_tokens)))
                send("[DONE]")
            except (BrokenPipeError, ConnectionResetError):
                return  # the client went away
            except Exception as exc:  # noqa: BLE001 - headers are sent: report in the stream, then end it
                send(api.APIError(500, f"sampling failed: {exc}").body())

    return ThreadingHTTPServer((host, port), Handler)
