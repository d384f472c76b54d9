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
    return [SquadArticle(str(entry.get("title", "")), tuple(_paragraph(p) for p in entry.get("paragraphs", [])))
            for entry in data["data"]]


def _paragraph(paragraph: dict) -> SquadParagraph:
    return SquadParagraph(paragraph["context"], tuple(_question(qa) for qa in paragraph.get("qas", [])))


def _question(qa: dict) -> SquadQuestion:
    first = (qa.get("answers") or [{}])[0]
    return SquadQuestion(str(qa.get("id", "")), qa.get("question", ""), first.get("text", ""),
                         int(first.get("answer_start", -1)), bool(qa.get("is_impossible", False)))
