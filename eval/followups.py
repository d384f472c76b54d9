"""``rag eval followups``: do follow-up questions retrieve the passage they ask about?

Each line of ``eval/followups.jsonl`` is a two-turn conversation: the previous question, the follow-up
("Et qu'en pense Microsoft ?") and ``evidence``, a piece of the passage the follow-up asks about. Each
follow-up is asked three ways through the pipeline's retrieval: alone, rewritten by the heuristic of
``rag.rewrite`` (what readers get without a chat model), and as the previous question followed by the
follow-up (the naive concatenation). A hit is the evidence inside one of the top ``k`` passages.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.errors import InputError
from rag.rewrite import heuristic

DEFAULT_SET = Path(__file__).resolve().parent / "followups.jsonl"
DEFAULT_CORPUS = [Path(__file__).resolve().parent.parent / "corpus",
                  Path(__file__).resolve().parent.parent / "tests" / "data" / "articles"]
WAYS = ("alone", "heuristic", "concatenated")


def load(path: Path | str = DEFAULT_SET) -> list[dict]:
    """The conversations; each needs previous, question and evidence."""
    items = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not all(isinstance(item.get(k), str) and item[k].strip() for k in ("previous", "question", "evidence")):
            raise InputError(f"{path}:{lineno}: each line needs `previous`, `question` and `evidence` as text")
        items.append(item)
    return items


def question_for(item: dict, way: str) -> str:
    if way == "alone":
        return item["question"]
    if way == "concatenated":
        return f"{item['previous']} {item['question']}"
    return heuristic(item["question"], item["previous"]).question


def measure(pipeline, items: list[dict], ks=(1, 3)) -> dict:
    """Per way: hits at each k, and per item the rank of the evidence (None when not in the top max(k))."""
    depth, out = max(ks), {}
    for way in WAYS:
        ranks = []
        for item in items:
            question = question_for(item, way)
            hits = pipeline.search(question, depth)
            rank = next((r for r, h in enumerate(hits, 1) if item["evidence"] in h.chunk.text), None)
            ranks.append({"id": item.get("id", ""), "question": question, "rank": rank})
        out[way] = {"hits": {f"@{k}": sum(1 for r in ranks if r["rank"] and r["rank"] <= k) for k in ks},
                    "items": ranks}
    return {"conversations": len(items), "ways": out}


def format_report(report: dict) -> str:
    n = report["conversations"]
    lines = [f"{n} two-turn conversations: follow-ups whose passage is retrieved"]
    for way, result in report["ways"].items():
        cells = "  ".join(f"{k} {v}/{n}" for k, v in result["hits"].items())
        lines.append(f"  {way:<13} {cells}")
    return "\n".join(lines)
