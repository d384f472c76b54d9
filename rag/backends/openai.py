"""The ``openai`` backend: any OpenAI-compatible chat-completions server, over httpx.

Works with OpenAI, Azure OpenAI (the ``/openai/v1`` endpoint), Mistral, vLLM, Ollama, the
llama.cpp server and LM Studio: ``POST {base_url}/chat/completions``. httpx is used directly
(it is already a dependency) so the retry and time-out policy is ours and tested:
429 and 5xx answers and refused connections are retried with exponential backoff (a
``Retry-After`` header is honoured up to ``MAX_BACKOFF``); a time-out is not retried, and
raises ``BackendError`` so the pipeline can answer extractively instead.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from common.errors import BackendError, ConfigError
from rag.backends import register
from rag.backends.chat import ChatBackend, Completion
from rag.prompt import Budget, tiktoken_counter

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF = 8.0


class OpenAIChat:
    """Chat completions from an OpenAI-compatible server, streamed, with retries and deadlines."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 10.0,
                 retries: int = 2, backoff: float = 0.5, deadline: float = 120.0,
                 temperature: float = 0.0, sleep: Callable[[float], None] = time.sleep):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key, self.model, self.timeout = api_key, model, timeout
        self.retries, self.backoff, self.deadline = retries, backoff, deadline
        self.temperature, self.sleep = temperature, sleep
        self._client = None

    def complete(self, messages: list[dict], max_tokens: int,
                 on_delta: Callable[[str], None] | None = None) -> Completion:
        """The model's reply; pieces go to ``on_delta`` as they arrive when it is given."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": self.temperature, "stream": on_delta is not None}
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return self._once(body, on_delta, started)
            except _Retryable as exc:
                wait = min(exc.retry_after or self.backoff * 2 ** attempt, MAX_BACKOFF)
                if attempt == self.retries or time.monotonic() - started + wait > self.deadline:
                    raise BackendError(f"openai backend failed after {attempt + 1} attempts: {exc}; "
                                       f"check the server at {self.url}") from None
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, body: dict, on_delta, started: float) -> Completion:
        """One request; raises _Retryable for what a retry may fix, BackendError for the rest."""
        import httpx

        try:
            with self._http().stream("POST", self.url, json=body, headers=self._headers()) as response:
                _check_status(response, self.url, self.model)
                if body["stream"]:
                    return self._read_stream(response, on_delta, started)
                response.read()
                return _parse_reply(response.content, self.model)
        except httpx.TimeoutException:
            raise BackendError(f"openai backend timed out after {self.timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise _Retryable(f"cannot connect ({exc})") from None
        except httpx.HTTPError as exc:
            raise BackendError(f"openai backend request failed: {exc}") from None

    def _read_stream(self, response, on_delta, started: float) -> Completion:
        """Join the streamed pieces, passing each on; a stream past the deadline is cut off."""
        pieces, model, finished = [], self.model, False
        for event in _events(response.iter_lines()):
            if event is None:
                finished = True
                break
            model = event.get("model") or model
            finished = finished or bool((event.get("choices") or [{}])[0].get("finish_reason"))
            piece = _delta_text(event)
            if piece:
                pieces.append(piece)
                on_delta(piece)
            if time.monotonic() - started > self.deadline:
                raise BackendError(f"openai backend timed out: the answer took over {self.deadline:g} s")
        if not finished:
            raise BackendError("openai backend's stream broke off before the end of the answer")
        return Completion("".join(pieces), model)

    def _headers(self) -> dict:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
            if ".azure.com" in self.url:  # Azure OpenAI takes its key in its own header
                headers["api-key"] = self.api_key
        return headers

    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout))
        return self._client


class _Retryable(Exception):
    """A failure a later attempt may not meet (429, 5xx, refused connection)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _check_status(response, url: str, model: str) -> None:
    """Raise for an error status: _Retryable when a retry may help, BackendError with a hint otherwise."""
    if response.status_code < 400:
        return
    response.read()
    detail = response.text[:300]
    if response.status_code in RETRY_STATUS:
        raise _Retryable(f"HTTP {response.status_code}: {detail}", _retry_after(response))
    hint = {401: "set RAG_OPENAI_API_KEY (or OPENAI_API_KEY)", 403: "check the API key's rights",
            404: f"check RAG_OPENAI_BASE_URL ({url}) and RAG_OPENAI_MODEL ({model})"}
    raise BackendError(f"openai backend answered HTTP {response.status_code}: {detail}; "
                       f"{hint.get(response.status_code, 'check the server and the request')}")


def _retry_after(response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _events(lines: Iterator[str]) -> Iterator[dict | None]:
    """The JSON payloads of a server-sent event stream; None for ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            yield None
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise BackendError(f"openai backend sent an unreadable stream event: {data[:200]!r}") from None
        if isinstance(event, dict) and event.get("error"):
            raise BackendError(f"openai backend reported an error mid-stream: {event['error']}")
        yield event


def _delta_text(event: dict) -> str:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def _parse_reply(content: bytes, model: str) -> Completion:
    """The text of a non-streamed reply, or BackendError naming what was wrong with it."""
    try:
        data = json.loads(content)
        return Completion(data["choices"][0]["message"]["content"] or "", data.get("model") or model)
    except (ValueError, KeyError, IndexError, TypeError):
        raise BackendError(f"openai backend sent a reply that is not a chat completion: {content[:200]!r}") from None


def make_chat(settings) -> OpenAIChat:
    """The chat model the settings describe."""
    if not settings.openai_base_url:
        raise ConfigError("the openai backend needs a server: set RAG_OPENAI_BASE_URL (or OPENAI_BASE_URL)")
    return OpenAIChat(settings.openai_base_url, settings.openai_api_key.get_secret_value(), settings.openai_model,
                      timeout=settings.llm_timeout, retries=settings.llm_retries, backoff=settings.llm_backoff,
                      deadline=settings.llm_deadline, temperature=settings.llm_temperature)


def missing(settings) -> str:
    """What the openai backend needs before it can answer ("" when configured)."""
    if settings.openai_base_url:
        return ""
    return ("set RAG_OPENAI_BASE_URL (or OPENAI_BASE_URL) to an OpenAI-compatible server, e.g. "
            "http://127.0.0.1:11434/v1, or OPENAI_API_KEY to use api.openai.com")


@register("openai", missing)
def _factory(settings, embedder) -> ChatBackend:
    budget = Budget(settings.llm_context_tokens, settings.llm_answer_tokens,
                    tiktoken_counter(settings.tiktoken_encoding))
    return ChatBackend("openai", make_chat(settings), budget)
