"""The ``llamacpp`` backend: a GGUF model run in process, by xllamacpp or by llama-cpp-python.

Two engines run the same GGUF files:
- ``xllamacpp`` (``pip install '.[xllamacpp]'``, MIT): prebuilt CPU wheels of llama.cpp's server,
  nothing to compile. The default when it is installed. Its server keeps the prompt's KV cache
  between questions (``cache_prompt``), so a question over the same passages skips their prompt
  processing; tokens are counted by the GGUF's own tokenizer (read by transformers with ``gguf``);
- ``llama-cpp-python`` (``pip install '.[llamacpp]'``): compiles llama.cpp at install (7-35 min).
``RAG_LLAMACPP_ENGINE`` chooses (``auto``: xllamacpp when installed). The model is loaded on the
first question, once. Generation is streamed internally even when nobody listens, so the deadline
(``RAG_LLM_DEADLINE``) can stop it between tokens. One lock serialises questions: a llama.cpp
context is not safe to share between threads. Threads: ``RAG_LLAMACPP_THREADS``, 0 = one on a
machine with two cores or fewer (measured here: two threads made generation collapse from 39 to
2.4 tokens/s under load), else every core.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.errors import BackendError, ConfigError
from rag.backends import register
from rag.backends.chat import ChatBackend, Completion
from rag.prompt import Budget

BUILD_HINT = ("install xllamacpp (`pip install -c constraints.txt '.[xllamacpp]'`, prebuilt) or build "
              "llama-cpp-python with CMAKE_ARGS as the README's 'Generative backends' section says")
ENGINES = ("auto", "xllamacpp", "llama-cpp-python")


def default_threads(cores: int | None = None) -> int:
    """One thread on two cores or fewer, else every core."""
    cores = cores or os.cpu_count() or 1
    return 1 if cores <= 2 else cores


def engine_for(choice: str) -> str:
    """The engine ``RAG_LLAMACPP_ENGINE`` names, ``auto`` resolved to what is installed ("" if none)."""
    installed = {"xllamacpp": importlib.util.find_spec("xllamacpp") is not None,
                 "llama-cpp-python": importlib.util.find_spec("llama_cpp") is not None}
    if choice == "auto":
        return next((name for name in ("xllamacpp", "llama-cpp-python") if installed[name]), "")
    return choice if installed.get(choice) else ""


class _LocalChat:
    """What both engines hold: the GGUF file, context size, threads, sampling, deadline and one lock."""

    def __init__(self, model_path: Path, context_tokens: int = 4096, threads: int = 0,
                 temperature: float = 0.0, deadline: float = 120.0):
        self.model_path, self.context_tokens = Path(model_path), context_tokens
        self.threads = threads or default_threads()
        self.temperature, self.deadline = temperature, deadline
        self._lock = threading.Lock()


class XLlamaCppChat(_LocalChat):
    """Chat completions from a local GGUF model through xllamacpp's in-process llama.cpp server."""

    _server = _tokenizer = None

    def load(self):
        """The server over the model, started on first use."""
        if self._server is None:
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.context_tokens
            params.cpuparams.n_threads = params.cpuparams_batch.n_threads = self.threads
            params.n_parallel = 1
            try:
                self._server = xllamacpp.Server(params)
            except Exception as exc:  # noqa: BLE001 -- xllamacpp raises plain exceptions on a bad file
                raise BackendError(f"xllamacpp cannot load {self.model_path}: {exc}; "
                                   "check that RAG_LLAMACPP_MODEL is a GGUF chat model") from None
        return self._server

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the GGUF's tokenizer; its UTF-8 bytes (never fewer than the tokens of a
        byte-level vocabulary) where transformers cannot read that tokenizer."""
        if self._tokenizer is None:
            self._tokenizer = _gguf_tokenizer(self.model_path) or False
        if self._tokenizer is False:
            return len(text.encode("utf-8"))
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def complete(self, messages: list[dict], max_tokens: int,
                 on_delta: Callable[[str], None] | None = None) -> Completion:
        """The model's reply, streamed to ``on_delta``; BackendError past the deadline."""
        with self._lock:
            server, started, pieces, errors = self.load(), time.monotonic(), [], []

            def chunk(data) -> bool:  # True stops the generation
                if isinstance(data, dict) and "error" in data:
                    errors.append(data["error"])
                    return True
                piece = ((data.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
                if piece:
                    pieces.append(piece)
                    if on_delta:
                        on_delta(piece)
                return time.monotonic() - started > self.deadline

            request = {"messages": messages, "max_tokens": max_tokens, "temperature": self.temperature,
                       "stream": True, "cache_prompt": True}
            result = server.handle_chat_completions(request, chunk)
            if isinstance(result, dict) and "error" in result:
                errors.append(result["error"])
            if errors:
                message = errors[0].get("message", errors[0]) if isinstance(errors[0], dict) else errors[0]
                raise BackendError(f"xllamacpp refused the question: {message}")
            if time.monotonic() - started > self.deadline:
                raise BackendError(f"llamacpp backend timed out: the answer took over {self.deadline:g} s")
            return Completion("".join(pieces), self.model_path.stem)


def _gguf_tokenizer(path: Path):
    """The model's tokenizer read from its GGUF file by transformers (needs ``gguf``), or None."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception:  # noqa: BLE001 -- any failure means: count bytes instead
        return None


class LlamaCppChat(_LocalChat):
    """Chat completions from a local GGUF model by llama-cpp-python."""

    _llm = None

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


def make_chat(settings) -> LlamaCppChat | XLlamaCppChat:
    """The local model the settings name, on the engine they choose; ConfigError when there is none."""
    path = settings.llamacpp_model
    if not path:
        raise ConfigError("the llamacpp backend needs a model: set RAG_LLAMACPP_MODEL to a GGUF file")
    if not Path(path).is_file():
        raise ConfigError(f"RAG_LLAMACPP_MODEL points at {path}, which is not a file; give a GGUF file")
    engine = engine_for(settings.llamacpp_engine)
    if not engine:
        raise ConfigError(f"the llamacpp backend's engine ({settings.llamacpp_engine}) is not installed; {BUILD_HINT}")
    chat = XLlamaCppChat if engine == "xllamacpp" else LlamaCppChat
    return chat(Path(path), settings.llm_context_tokens, settings.llamacpp_threads, settings.llm_temperature,
                settings.llm_deadline)


def missing(settings) -> str:
    """What the llamacpp backend needs before it can answer ("" when configured)."""
    if not settings.llamacpp_model:
        return "set RAG_LLAMACPP_MODEL to a GGUF file"
    if not Path(settings.llamacpp_model).is_file():
        return f"RAG_LLAMACPP_MODEL points at {settings.llamacpp_model}, which is not a file; give a GGUF file"
    if not engine_for(settings.llamacpp_engine):
        return f"no llama.cpp engine ({settings.llamacpp_engine}) is installed; {BUILD_HINT}"
    return ""


@register("llamacpp", missing)
def _factory(settings, embedder) -> ChatBackend:
    chat = make_chat(settings)
    return ChatBackend("llamacpp", chat, Budget(settings.llm_context_tokens, settings.llm_answer_tokens, chat.count))
