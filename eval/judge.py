"""An optional LLM judge: an OpenAI-compatible chat model grades each answer, averaged over repeats.

Never required: ``rag eval answers --judge`` turns it on, using the ``openai`` backend's server
settings (RAG_OPENAI_BASE_URL, RAG_OPENAI_API_KEY, RAG_OPENAI_MODEL). The model scores 0-10
how well the answer matches the expected answer (or, for an unanswerable question, whether it
declines); the item's ``judge`` metric is the mean of the repeats divided by 10. A repeat that
fails or cannot be read is left out; when all fail the metric is None, and the run goes on.
"""
from __future__ import annotations

import re

from common.citations import strip_marks
from common.errors import BackendError
from eval.dataset import EvalItem

JUDGE_TEMPERATURE = 0.7  # repeats only differ, and so only average anything, above zero
_PROMPT = """You grade answers of a question-answering system over news articles.
Question: {question}
Expected answer: {expected}
System answer: {answer}
{rule}
Reply with JSON only: {{"score": N}} where N is an integer from 0 (wrong) to 10 (fully right)."""
_ANSWERABLE = "Grade whether the system answer says what the expected answer says (extra true detail is fine)."
_UNANSWERABLE = ("The articles do not answer this question: a right system answer says so and gives no answer; "
                 "any other answer is wrong.")


class LLMJudge:
    """Grades answers with a chat model (anything with ``complete(messages, max_tokens)``)."""

    def __init__(self, chat, repeats: int = 3):
        self.chat, self.repeats = chat, max(1, repeats)
        self.failures = 0

    def __call__(self, item: EvalItem, answer: dict) -> float | None:
        """The mean score of the repeats, from 0 to 1; None when no repeat gave a score."""
        prompt = _PROMPT.format(question=item.question, expected=item.expected_answer or "(none)",
                                answer=strip_marks(answer["answer"]),
                                rule=_ANSWERABLE if item.answerable else _UNANSWERABLE)
        scores = [s for s in (self._score(prompt) for _ in range(self.repeats)) if s is not None]
        return round(sum(scores) / len(scores) / 10, 4) if scores else None

    def _score(self, prompt: str) -> float | None:
        try:
            reply = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=20).text
        except BackendError:
            self.failures += 1
            return None
        return parse_score(reply)


def parse_score(reply: str) -> float | None:
    """The 0-10 score in a reply such as ``{"score": 7}``, or None."""
    match = re.search(r"\"score\"\s*:\s*(\d+(?:\.\d+)?)", reply) or re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*", reply)
    if not match or not 0 <= float(match.group(1)) <= 10:
        return None
    return float(match.group(1))


def judge_from_settings(settings, repeats: int = 3) -> LLMJudge:
    """A judge talking to the server the ``openai`` backend is configured with."""
    from rag.backends.openai import make_chat

    return LLMJudge(make_chat(settings.model_copy(update={"llm_temperature": JUDGE_TEMPERATURE})), repeats)
