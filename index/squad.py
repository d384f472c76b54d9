"""SQuAD-format files (PIAF v1.0 is one), read in one place: articles, their paragraphs, their questions.

``rag index`` indexes each titled entry as an article (its paragraphs joined by blank lines,
``SquadArticle.text``); the evaluations and the reader's training data read the questions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import InputError

PIAF = "../shared/datasets/piaf-v1.0/piaf-v1.0.json"  # the development data, from the repository root


@dataclass(frozen=True)
class SquadQuestion:
    """A question with its first answer (``answer_start`` is -1 and ``answer`` empty without one)."""

    id: str
    question: str
    answer: str
    answer_start: int
    impossible: bool = False


@dataclass(frozen=True)
class SquadParagraph:
    """A paragraph's context, exactly as in the file, and its questions."""

    context: str
    questions: tuple[SquadQuestion, ...]


@dataclass(frozen=True)
class SquadArticle:
    """One titled entry of the file."""

    title: str
    paragraphs: tuple[SquadParagraph, ...]

    @property
    def text(self) -> str:
        """The article's text: its paragraphs' contexts, stripped, separated by blank lines."""
        return "\n\n".join(p.context.strip() for p in self.paragraphs)


def read_squad(path: str | Path, raw: str | None = None) -> list[SquadArticle]:
    """The articles of a SQuAD-format file (``raw``: its text, when already read)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") if raw is None else raw)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such SQuAD file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a UTF-8 JSON file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError(f"{path}: expected SQuAD format: an object with a `data` list of titled articles")
    return [_article(entry, f"{path}: data[{i}]") for i, entry in enumerate(data["data"])]


def _article(entry, where: str) -> SquadArticle:
    entry = _object(entry, where)
    paragraphs = entry.get("paragraphs", [])
    if not isinstance(paragraphs, list):
        raise InputError(f"{where}.paragraphs must be a list of {{\"context\": ..., \"qas\": [...]}} objects")
    return SquadArticle(_string(entry, "title", where, required=False),
                        tuple(_paragraph(p, f"{where}.paragraphs[{k}]") for k, p in enumerate(paragraphs)))


def _paragraph(paragraph, where: str) -> SquadParagraph:
    paragraph = _object(paragraph, where)
    qas = paragraph.get("qas", [])
    if not isinstance(qas, list):
        raise InputError(f"{where}.qas must be a list of question objects")
    return SquadParagraph(_string(paragraph, "context", where),
                          tuple(_question(qa, f"{where}.qas[{k}]") for k, qa in enumerate(qas)))


def _question(qa, where: str) -> SquadQuestion:
    qa = _object(qa, where)
    answers = qa.get("answers") or [{}]
    if not isinstance(answers, list):
        raise InputError(f"{where}.answers must be a list of {{\"text\": ..., \"answer_start\": N}} objects")
    first = _object(answers[0], f"{where}.answers[0]")
    start = first.get("answer_start", -1)
    if isinstance(start, bool) or not isinstance(start, int):
        raise InputError(f"{where}.answers[0].answer_start must be a whole number of characters, not {start!r}")
    ident = qa.get("id", "")
    if not isinstance(ident, str | int) or isinstance(ident, bool):
        raise InputError(f"{where}.id must be a string, not {ident!r}")
    return SquadQuestion(str(ident), _string(qa, "question", where, required=False),
                         _string(first, "text", f"{where}.answers[0]", required=False), start,
                         bool(qa.get("is_impossible", False)))


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a JSON object, not {type(value).__name__}; see the SQuAD format")
    return value


def _string(obj: dict, key: str, where: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        missing = "is missing" if value is None else f"must be a string, not {type(value).__name__}"
        raise InputError(f"{where}.{key} {missing}")
    return value
