"""Follow-up questions made standalone before retrieval ("et Microsoft ?" -> a whole question).

With a chat model (the request's backend is generative) the model rewrites the question from the
conversation. Otherwise, or when the model fails, a heuristic does, using the last question of the
history (``{"role": "user", "content": ...}`` messages):

1. A question is a follow-up when it opens with a connector ("et", "mais", "and", "what about",
   "how about", "quid de", "et pour", "et qu'en est-il de", "also", "aussi"), or names nobody and
   refers back with a pronoun (il, elle, ils, ça, cela, it, they, he, she, this, that...), or has
   at most two content words. Anything else is left as it is.
2. A connector follow-up that is just a name ("et Microsoft ?") replaces the first name of the
   previous question with it ("Combien Google a-t-il investi ?" -> "Combien Microsoft a-t-il
   investi ?"); names not at the start of the question are preferred, as the start is often a
   question word. One that brings no name ("et en 2024 ?") is appended to the previous question.
3. Any other follow-up is kept and the previous question follows it in parentheses
   ("Quand l'a-t-il annoncé ? (Combien Microsoft a-t-il investi dans OpenAI ?)"), which is what
   retrieval needs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import BackendError
from common.text import NAME_RUN, content_terms

CONNECTORS = ("et qu'en est-il de", "et qu'en est-il d'", "qu'en est-il de", "qu'en est-il d'", "et pour",
              "et chez", "et avec", "et du côté de", "quid de", "what about", "how about", "and for",
              "and what about", "et", "mais", "and", "but", "also", "aussi", "same for", "pareil pour")
PRONOUNS = frozenset("il elle ils elles lui leur leurs ça cela ceci celui celle ceux it they them he she "
                     "him her his its their this that these those".split())
OPENERS = PRONOUNS | {"depuis", "selon", "d'après", "according", "since", "après", "avant", "before", "after"}
MAX_REWRITE_TOKENS = 96
REWRITE_PROMPT = """Rewrite the user's last question so that it can be understood without the conversation: \
replace pronouns and elliptical phrases with what they refer to. Keep the language of the last question. \
Reply with the rewritten question only, on one line. If it is already standalone, repeat it unchanged."""


@dataclass(frozen=True)
class Rewrite:
    """The standalone question, how it was obtained ("none", "heuristic", "llm") and a note."""

    question: str
    method: str = "none"
    note: str = ""


def rewrite(question: str, history: list[dict] | tuple = (), chat=None) -> Rewrite:
    """``question`` made standalone using ``history``; the model when ``chat`` is given, else the heuristic."""
    previous = last_question(history)
    if not previous:
        return Rewrite(question)
    if chat is not None:
        try:
            return _by_model(question, history, chat)
        except BackendError as exc:
            result = heuristic(question, previous)
            return Rewrite(result.question, result.method, f"{result.note} (the model failed: {exc})")
    return heuristic(question, previous)


def last_question(history) -> str:
    """The last user message of the history, or ''."""
    for turn in reversed(list(history or ())):
        if isinstance(turn, dict) and turn.get("role") == "user" and str(turn.get("content", "")).strip():
            return str(turn["content"]).strip()
    return ""


def heuristic(question: str, previous: str) -> Rewrite:
    """The documented rules of this module's docstring."""
    rest = _after_connector(question)
    if rest is None and not _refers_back(question):
        return Rewrite(question)
    names = _names(previous, skip_first=True) or _names(previous)
    if rest is not None and _names(rest) == [rest] and names:
        standalone = previous.replace(names[0], rest, 1)
    elif rest is not None and not _names(rest):
        standalone = f"{previous.rstrip(' ?')} {rest} ?"
    else:
        standalone = f"{question} ({previous})"
    return Rewrite(standalone, "heuristic", f"follow-up rewritten from the history: {question!r} -> {standalone!r}")


def _after_connector(question: str) -> str | None:
    """What follows an opening connector ("et Microsoft ?" -> "Microsoft"), or None without one."""
    plain = question.strip().replace("’", "'")
    lower = plain.lower()
    for c in CONNECTORS:
        if lower.startswith(c) and (len(lower) == len(c) or not lower[len(c)].isalnum() or c.endswith("'")):
            return plain[len(c):].strip(" ,?!.…") or None
    return None


def _refers_back(question: str) -> bool:
    words = re.findall(r"\w+", question.lower().replace("’", " ").replace("'", " "))
    if _names(question, skip_first=True):
        return False
    return (len(content_terms(question)) <= 2 and len(words) <= 5) or any(w in PRONOUNS for w in words)


def _names(text: str, skip_first: bool = False) -> list[str]:
    """Runs of capitalised words (the first word of ``text`` counts unless ``skip_first``)."""
    out = []
    for m in NAME_RUN.finditer(text):
        name = m.group()
        if m.start() == len(text) - len(text.lstrip()):
            first = name.split()[0]
            if skip_first or first.lower() in OPENERS or not content_terms(first):
                name = " ".join(name.split()[1:])
        if name and content_terms(name):
            out.append(name)
    return out


def _by_model(question: str, history, chat) -> Rewrite:
    """The chat model's rewrite, checked for sanity (one line, not empty, not much longer)."""
    turns = [t for t in history if isinstance(t, dict) and t.get("role") in ("user", "assistant")][-6:]
    conversation = "\n".join(f"{t['role']}: {str(t.get('content', ''))[:600]}" for t in turns)
    messages = [{"role": "system", "content": REWRITE_PROMPT},
                {"role": "user", "content": f"Conversation:\n{conversation}\n\nLast question: {question}"}]
    text = chat.complete(messages, MAX_REWRITE_TOKENS).text.strip().strip('"«» ')
    if not text or "\n" in text or len(text) > 4 * len(question) + 200:
        raise BackendError(f"the model's rewrite was unusable: {text[:80]!r}")
    if text == question:
        return Rewrite(question, "llm")
    return Rewrite(text, "llm", f"follow-up rewritten by the model: {question!r} -> {text!r}")
