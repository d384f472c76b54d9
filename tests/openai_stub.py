"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

Each request takes the next ``Reply`` of the script; with the script empty it echoes: the first
sentence of passage 1 of the prompt, cited [1] (or, for a rewrite request, the question unchanged).
Every request body is recorded. Streaming follows the OpenAI server-sent events format.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common.sentences import split_sentences

MAX_DELAY = 5.0  # no scripted wait is longer: the server must stop by itself


@dataclass
class Reply:
    """One scripted answer: text (None = echo), or an error status; waits before and between chunks."""

    text: str | None = None
    status: int = 200
    delay: float = 0.0
    chunk_delay: float = 0.0
    headers: dict = field(default_factory=dict)
    cut_after: int | None = None  # close a stream after this many chunks, without [DONE]


class OpenAIStub:
    """The server; use as a context manager. ``url`` is the base URL (ending in /v1)."""

    def __init__(self, model: str = "stub-model"):
        self.model, self.script, self.requests = model, deque(), []
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def push(self, *replies: Reply) -> None:
        """Script the next answers, in order."""
        self.script.extend(replies)

    def reset(self) -> None:
        self.script.clear()
        self.requests.clear()

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_reply(self, body: dict) -> Reply:
        self.requests.append(body)
        reply = self.script.popleft() if self.script else Reply()
        return reply if reply.text is not None or reply.status != 200 else Reply(echo(body), **_rest(reply))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """Clients that hang up (a time-out test) are expected; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _rest(reply: Reply) -> dict:
    return {"delay": reply.delay, "chunk_delay": reply.chunk_delay, "headers": reply.headers,
            "cut_after": reply.cut_after}


def echo(body: dict) -> str:
    """The default answer: passage 1's first sentence cited [1]; a rewrite request gets its question back."""
    user = body["messages"][-1]["content"]
    match = re.search(r'<passage n="1"[^>]*>\n(.*?)\n</passage>', user, re.S)
    if not match:
        return user.rsplit("Last question:", 1)[-1].strip()
    text = match.group(1)
    a, b = split_sentences(text)[0]
    return f"{text[a:b]} [1]"


def passages_of(body: dict) -> list[str]:
    """The texts of the passages a request showed the model, in order."""
    return re.findall(r'<passage n="\d+"[^>]*>\n(.*?)\n</passage>', body["messages"][-1]["content"], re.S)


def _handler(stub: OpenAIStub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            if not self.path.endswith("/chat/completions"):
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            body["_headers"] = dict(self.headers)
            reply = stub.next_reply(body)
            time.sleep(min(reply.delay, MAX_DELAY))
            if reply.status != 200:
                return self._json(reply.status, {"error": {"message": f"scripted {reply.status}"}}, reply.headers)
            if body.get("stream"):
                return self._stream(reply)
            self._json(200, {"id": "cmpl-1", "object": "chat.completion", "model": stub.model,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": reply.text}}]})

        def _json(self, status: int, data: dict, headers: dict | None = None) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _stream(self, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            pieces = re.findall(r"\S+\s*", reply.text)
            for i, piece in enumerate(pieces):
                if reply.cut_after is not None and i == reply.cut_after:
                    return
                time.sleep(min(reply.chunk_delay, MAX_DELAY))
                event = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": stub.model,
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


def llamacpp_skip_reason() -> str:
    """Why the llamacpp backend cannot run here, or '' when it can."""
    import importlib.util
    import os

    path = os.environ.get("RAG_LLAMACPP_MODEL", "")
    if importlib.util.find_spec("xllamacpp") is None and importlib.util.find_spec("llama_cpp") is None:
        return ("no llama.cpp engine is installed: pip install '.[xllamacpp]' (prebuilt), or build llama-cpp-python "
                "as README 'Generative backends' says, and set RAG_LLAMACPP_MODEL to a GGUF file")
    if not path or not os.path.isfile(path):
        return f"RAG_LLAMACPP_MODEL is {path or 'unset'}; set it to a GGUF chat model file to run llamacpp"
    return ""


def contract_settings(name: str, settings, server: OpenAIStub):
    """Settings under which backend ``name`` can answer in a test (skips llamacpp when it can't)."""
    import os
    from pathlib import Path

    import pytest

    if name == "openai":
        return settings.model_copy(update={"openai_base_url": server.url})
    if name == "llamacpp":
        if reason := llamacpp_skip_reason():
            pytest.skip(reason)
        return settings.model_copy(update={"llamacpp_model": Path(os.environ["RAG_LLAMACPP_MODEL"])})
    if name == "reader":
        from rag.reader.reader import MANIFEST_FILE, WEIGHTS_DIR

        folder = settings.reader_dir or WEIGHTS_DIR
        if not (Path(folder) / MANIFEST_FILE).exists():
            pytest.skip(f"no reader weights in {folder}: run `rag train reader`")
    return settings
