"""The ``llamacpp`` backend: a GGUF model run in process by llama-cpp-python (``pip install .[llamacpp]``).

The model is loaded on the first question, once. Generation is streamed internally even when
nobody listens, so the deadline (``RAG_LLM_DEADLINE``) can stop it between tokens. One lock
serialises questions: a llama.cpp context is not safe to share between threads. The token
budget counts with the model's own tokenizer.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.errors import BackendError, ConfigError
from rag.backends import register
from rag.backends.chat import ChatBackend, Completion
from rag.prompt import Budget

BUILD_HINT = ("install it with CMAKE_ARGS set as the README's 'Generative backends' section says, "
              "then `pip install -c constraints.txt '.[llamacpp]'`")


class LlamaCppChat:
    """Chat completions from a local GGUF model."""

    def __init__(self, model_path: Path, context_tokens: int = 4096, threads: int = 0,
                 temperature: float = 0.0, deadline: float = 120.0):
        self.model_path, self.context_tokens = Path(model_path), context_tokens
        self.threads = threads or os.cpu_count() or 1
        self.temperature, self.deadline = temperature, deadline
        self._llm, self._lock = None, threading.Lock()

    def load(self):
        """The llama.cpp model, loaded on first use."""
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ConfigError(f"the llamacpp backend needs llama-cpp-python; {BUILD_HINT}") from None
            try:
                self._llm = Llama(model_path=str(self.model_path), n_ctx=self.context_tokens,
                                  n_threads=self.threads, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"llama.cpp cannot load {self.model_path}: {exc}; "
                                   "check that RAG_LLAMACPP_MODEL is a GGUF chat model") from None
        return self._llm

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the model's tokenizer."""
        return len(self.load().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def complete(self, messages: list[dict], max_tokens: int,
                 on_delta: Callable[[str], None] | None = None) -> Completion:
        """The model's reply, streamed to ``on_delta``; BackendError past the deadline."""
        with self._lock:
            llm, started, pieces = self.load(), time.monotonic(), []
            stream = llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                temperature=self.temperature, stream=True)
            for chunk in stream:
                piece = (chunk["choices"][0].get("delta") or {}).get("content") or ""
                if piece:
                    pieces.append(piece)
                    if on_delta:
                        on_delta(piece)
                if time.monotonic() - started > self.deadline:
                    stream.close()
                    raise BackendError(f"llamacpp backend timed out: the answer took over {self.deadline:g} s")
            return Completion("".join(pieces), self.model_path.stem)


def make_chat(settings) -> LlamaCppChat:
    """The local model the settings name; ConfigError when there is none."""
    path = settings.llamacpp_model
    if not path:
        raise ConfigError("the llamacpp backend needs a model: set RAG_LLAMACPP_MODEL to a GGUF file")
    if not Path(path).is_file():
        raise ConfigError(f"RAG_LLAMACPP_MODEL points at {path}, which is not a file; give a GGUF file")
    return LlamaCppChat(Path(path), settings.llm_context_tokens, settings.llamacpp_threads,
                        settings.llm_temperature, settings.llm_deadline)


def missing(settings) -> str:
    """What the llamacpp backend needs before it can answer ("" when configured)."""
    import importlib.util

    if not settings.llamacpp_model:
        return "set RAG_LLAMACPP_MODEL to a GGUF file"
    if not Path(settings.llamacpp_model).is_file():
        return f"RAG_LLAMACPP_MODEL points at {settings.llamacpp_model}, which is not a file; give a GGUF file"
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed; {BUILD_HINT}"
    return ""


@register("llamacpp", missing)
def _factory(settings, embedder) -> ChatBackend:
    chat = make_chat(settings)
    return ChatBackend("llamacpp", chat, Budget(settings.llm_context_tokens, settings.llm_answer_tokens, chat.count))
