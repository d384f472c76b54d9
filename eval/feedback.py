"""Readers' feedback on answers (👍/👎 with an optional reason), kept for editors as candidate eval items.

One JSON object per line in ``RAG_FEEDBACK_FILE`` (default ``var/feedback.jsonl``), appended under a
lock: when, the rating, the reason, the question, the answer, the backend and the passages it cited.
"""
from __future__ import annotations

import fcntl
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import InputError

RATINGS = ("up", "down")
MAX_TEXT = 20_000


@dataclass(frozen=True)
class Feedback:
    """One reader's verdict on one answer."""

    rating: str
    question: str
    answer: str
    reason: str = ""
    backend: str = ""
    language: str = ""
    cited: tuple[str, ...] = ()  # chunk ids of the passages the answer cited
    at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


class FeedbackStore:
    """Appends and reads the feedback file; safe across threads and processes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def add(self, feedback: Feedback) -> Feedback:
        if feedback.rating not in RATINGS:
            raise InputError(f"a rating is one of {', '.join(RATINGS)}; got {feedback.rating!r}")
        if not feedback.question.strip():
            raise InputError("feedback needs the question it is about")
        record = {k: (v[:MAX_TEXT] if isinstance(v, str) else list(v) if isinstance(v, tuple) else v)
                  for k, v in asdict(feedback).items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return feedback

    def items(self, rating: str | None = None) -> list[Feedback]:
        """Every feedback, newest first (``rating`` keeps one kind); unreadable lines are skipped."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                item = Feedback(**{**data, "cited": tuple(data.get("cited", ()))})
            except (json.JSONDecodeError, TypeError):
                continue
            if rating is None or item.rating == rating:
                out.append(item)
        return out[::-1]
