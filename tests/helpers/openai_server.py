"""A real local HTTP server speaking the OpenAI protocol, for tests of anything that calls an OpenAI-style API.

Why a real server and not a mocked client: the code under test builds an ``openai.OpenAI`` client, sends real
HTTP requests, and must survive what real servers do (429s, 500s, slow answers hitting the client timeout,
concurrency limits). Only a socket on 127.0.0.1 exercises all of that, including the SDK's own parsing.

Usage::

    from helpers.openai_server import OpenAIProtocolServer   # tests/ is on pytest's path (pyproject)

    def chat(body: dict) -> str | tuple[int, dict]:
        return "rank: [1, 0]"                       # the assistant message content
        # or: return 429, {"error": {"message": "slow down", "type": "rate_limit_error"}}

    with OpenAIProtocolServer(chat=chat) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...
        assert len(server.requests) == 1            # every received JSON body, in arrival order

API (kept stable; other tests rely on it):

- ``OpenAIProtocolServer(chat=None, completions=None, delay=0.0)``; a context manager (``start``/``close`` too).
- ``POST /v1/chat/completions``: ``chat(body)`` is called once per choice (``body["n"]``, default 1) and returns
  the assistant content string; the server wraps the choices in a proper ``chat.completion`` object with a
  ``usage`` block (tokens counted as whitespace-separated words of the messages and of the answer). Returning
  ``(status, json_body)`` instead sends that error response as is (e.g. 429 or 500). Returning
  ``{"content": str, "logprobs": [float, ...]}`` also gives the choice those token log-probs (chat's
  ``logprobs.content``, one entry per whitespace-separated word of the content).
- ``POST /v1/completions``: ``completions(body)`` returns the response body (``choices`` with ``text`` /
  ``logprobs`` as the test needs); ``id``, ``object``, ``created`` and ``model`` are filled in when missing.
  ``(status, json_body)`` sends an error.
- ``GET /v1/models``: lists one model, ``"test-model"``.
- An endpoint without a handler answers 404. A handler that raises answers 500 with the exception text.
- A handler may instead return a ``Raw`` reply, sent byte for byte as the whole response (whatever ``n``): a
  hostile or broken server (a body that is not JSON, an HTML page, gzip garbage, a body trickled byte by byte,
  a connection closed mid-body, any status and headers).
- ``delay`` seconds are slept before every POST is handled (handlers may also sleep themselves).
- ``.base_url`` is ``"http://127.0.0.1:PORT/v1"``; ``.requests`` lists the received POST bodies (guarded by a
  lock, appended on arrival); ``.max_in_flight`` is the highest number of POSTs handled at the same time.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

ChatHandler = Callable[[dict], "str | dict | tuple[int, dict] | Raw"]
CompletionsHandler = Callable[[dict], "dict | tuple[int, dict] | Raw"]


@dataclass(frozen=True)
class Raw:
    """A response sent as is, for tests of what a client does with a server that breaks the protocol."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    trickle: float = 0.0
    """Seconds slept before each byte of the body (a server that holds a client with a slow drip)."""
    cut_after: int | None = None
    """Close the connection after this many body bytes, although ``Content-Length`` announced them all."""
    trickle_headers: bool = False
    """Drip the status line and headers too, a byte per ``trickle`` seconds (held before any reply is read)."""


def _words(text: str) -> int:
    return len(text.split())


def _message_text(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


class OpenAIProtocolServer:
    """A threaded OpenAI-protocol server on 127.0.0.1 (ephemeral port); see the module docstring."""

    def __init__(self, chat: ChatHandler | None = None, completions: CompletionsHandler | None = None,
                 delay: float = 0.0) -> None:
        self.chat = chat
        self.completions = completions
        self.delay = delay
        self.requests: list[dict] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "OpenAIProtocolServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model",
                                                                 "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    reply = server._dispatch(self.path.rstrip("/"), body)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                if isinstance(reply, Raw):
                    self._send_raw(reply)
                else:
                    self._send(*reply)

            def _send_raw(self, reply: Raw) -> None:
                body = reply.body if reply.cut_after is None else reply.body[:reply.cut_after]
                try:
                    self.send_response_only(reply.status)  # no Server/Date lines: the header block is exactly this
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    if reply.trickle_headers:
                        head = b"".join(self._headers_buffer) + b"\r\n"
                        self._headers_buffer = []
                        for i in range(len(head)):
                            time.sleep(reply.trickle)
                            self.wfile.write(head[i:i + 1])
                            self.wfile.flush()
                    else:
                        self.end_headers()
                    if reply.trickle:
                        for i in range(len(body)):
                            time.sleep(reply.trickle)
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(body)
                    if reply.cut_after is not None:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) first
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAIProtocolServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dispatch(self, path: str, body: dict) -> "tuple[int, dict] | Raw":
        try:
            if path == "/v1/chat/completions" and self.chat is not None:
                return self._chat_response(body)
            if path == "/v1/completions" and self.completions is not None:
                return self._completions_response(body)
        except Exception as err:  # a broken test handler must show up as a server error, not a hang
            return 500, {"error": {"message": f"{type(err).__name__}: {err}", "type": "server_error"}}
        return 404, {"error": {"message": f"no handler for {path}", "type": "not_found"}}

    def _chat_response(self, body: dict) -> "tuple[int, dict] | Raw":
        assert self.chat is not None
        contents: list[str] = []
        logprobs: list[dict | None] = []
        for _ in range(int(body.get("n") or 1)):
            answer = self.chat(body)
            if isinstance(answer, (tuple, Raw)):
                return answer
            if isinstance(answer, dict):
                contents.append(answer["content"])
                logprobs.append({"content": [{"token": word, "logprob": lp, "bytes": None, "top_logprobs": []}
                                             for word, lp in zip(answer["content"].split(), answer["logprobs"])]})
            else:
                contents.append(answer)
                logprobs.append(None)
        prompt_tokens = sum(_words(_message_text(m)) for m in body.get("messages", []))
        completion_tokens = sum(_words(c) for c in contents)
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop",
                         "logprobs": lp} for i, (c, lp) in enumerate(zip(contents, logprobs))],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _completions_response(self, body: dict) -> "tuple[int, dict] | Raw":
        assert self.completions is not None
        answer = self.completions(body)
        if isinstance(answer, (tuple, Raw)):
            return answer
        answer.setdefault("id", f"cmpl-{len(self.requests)}")
        answer.setdefault("object", "text_completion")
        answer.setdefault("created", int(time.time()))
        answer.setdefault("model", body.get("model", "test-model"))
        return 200, answer
