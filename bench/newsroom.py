"""The newsroom test corpus end to end: dates, corrections and wire copies, with the real model.

    .venv/bin/python bench/newsroom.py [--json] [--out FILE]

Indexes tests/data/newsroom as a newsroom would receive it: the articles and the wire copies in one write,
then the corrections (same ids, new text) in a second, and asks every item of its eval set
(tests/data/newsroom/newsroom.jsonl) with ``RAG_TODAY=2025-07-15`` (the set's reference date) and the
default settings otherwise. Prints the eval's summary, and:

- ``time``: items whose answer changed over time (or that name a period): the share whose answer is led by
  a passage holding the evidence of the newest relevant article (or of the period's), the share that cite
  it anywhere, and the share whose answer says its article's date;
- ``wire``: for questions about a story indexed five times, the distinct stories (by the fixtures' own
  pairs, not the detector) among the passages;
- per tag: pass rate, F1, abstention.

It uses only what the answering pipeline had before dates and copies were handled, so the same script run
on an older checkout measures "before" (README "Dates").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "data" / "newsroom"
TODAY = "2025-07-15"


def true_stories() -> dict[str, str]:
    """Article id -> its story, from the fixtures' hand-made pairs (copies joined, union-find)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for line in (FIXTURES / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            pair = json.loads(line)
            if pair["copy"]:
                parent[root(pair["a"])] = root(pair["b"])
    return {x: root(x) for x in parent}


def build(index_dir: Path):
    """The pipeline over the fixtures, written as two writes (articles and copies, then corrections)."""
    os.environ["RAG_TODAY"] = TODAY
    os.environ["RAG_INDEX_DIR"] = str(index_dir)
    from index.build import update_index
    from index.loaders import load_articles
    from index.store import IndexStore
    from rag.pipeline import Pipeline
    from rag.service import make_chunker, make_embedder
    from rag.settings import Settings

    settings = Settings()
    embedder, chunker, store = make_embedder(settings), make_chunker(settings), IndexStore(index_dir)
    update_index(store, embedder, chunker, load_articles([FIXTURES / "articles", FIXTURES / "wire"]))
    data, _ = update_index(store, embedder, chunker, load_articles([FIXTURES / "corrections"]))
    return Pipeline(settings, embedder, data)


def time_measures(results) -> dict:
    """For the time items: led by the newest evidence, citing it, saying the date."""
    from common.citations import cited_numbers
    from eval.metrics import find_span

    led = cited = dated = n = 0
    for r in results:
        if "time" not in r.item["tags"] or not r.item["answerable"]:
            continue
        n += 1
        answer = r.answer
        numbers = cited_numbers(answer["answer"]) if not answer["abstained"] else []
        texts = {c["n"]: c["text"] for c in answer["citations"]}
        holds = [x for x in numbers if find_span(texts.get(x, ""), r.item["evidence"])]
        led += bool(numbers) and numbers[0] in holds
        cited += bool(holds)
        dated += any(w in answer["answer"] for w in ("Selon l'article du", "According to the article of"))
    return {"items": n, "led_by_newest": round(led / n, 3) if n else None,
            "cite_newest": round(cited / n, 3) if n else None, "say_the_date": round(dated / n, 3) if n else None}


def wire_measures(pipeline, items, stories: dict[str, str]) -> dict:
    """Distinct stories among the passages of the questions about a story with five versions."""
    sizes: dict[str, int] = {}
    for story in stories.values():
        sizes[story] = sizes.get(story, 0) + 1
    big = {s for s, n in sizes.items() if n >= 5}
    rows = []
    for item in items:
        if "wire" not in item.tags:
            continue
        hits = pipeline.search(item.question)
        found = [stories.get(h.chunk.article_id, h.chunk.article_id) for h in hits]
        if big & set(found):
            rows.append({"id": item.id, "passages": len(hits), "distinct_stories": len(set(found)),
                         "versions_of_the_story": sum(f in big for f in found)})
    return {"questions": len(rows), "min_distinct_stories": min((r["distinct_stories"] for r in rows), default=None),
            "rows": rows}


def per_tag(results) -> dict:
    out: dict[str, dict] = {}
    for tag in sorted({t for r in results for t in r.item["tags"]}):
        rows = [r for r in results if tag in r.item["tags"]]
        f1 = [r.metrics["f1"] for r in rows if r.metrics.get("f1") is not None]
        abst = [r.metrics["abstention"] for r in rows if r.metrics.get("abstention") is not None]
        out[tag] = {"items": len(rows), "pass_rate": round(sum(r.ok for r in rows) / len(rows), 3),
                    "f1": round(sum(f1) / len(f1), 3) if f1 else None,
                    "abstention": round(sum(abst) / len(abst), 3) if abst else None}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the per-item results (JSON)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build(Path(tmp) / "index")
        from eval.dataset import load_items
        from eval.runner import run_eval

        items = load_items(FIXTURES / "newsroom.jsonl")
        run = run_eval(pipeline, items)
        report = {"summary": run.summary, "time": time_measures(run.results),
                  "wire": wire_measures(pipeline, items, true_stories()), "tags": per_tag(run.results),
                  "seconds": round(time.perf_counter() - started, 1)}
        if args.out:
            Path(args.out).write_text(json.dumps(run.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
        return 0
    print("summary:", json.dumps({k: v for k, v in report["summary"].items()}, ensure_ascii=False))
    print("time:", json.dumps(report["time"]))
    print("wire:", json.dumps({k: v for k, v in report["wire"].items() if k != "rows"}))
    for tag, row in report["tags"].items():
        print(f"  {tag:<16} {json.dumps(row)}")
    print(f"{report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
