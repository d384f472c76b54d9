"""How well MinHash tells wire copies from distinct stories of one topic, and which threshold to use.

    .venv/bin/python bench/duplicates.py [--piaf N] [--seed 7] [--json]

Two sets of pairs:

- ``fixtures``: tests/data/newsroom/pairs.jsonl, written by hand over the test articles: every pair of
  versions of a wire story (agency copy, other outlets: credit line, a sentence added or dropped, words
  changed, the lead rewritten) against pairs of distinct stories of one topic (same people, days apart);
- ``piaf``: pairs made from PIAF articles (held out by nothing: no model is trained here). A copy is an
  article with seeded edits of the kinds wire copies show (a credit line, its lead rewritten from another
  of its sentences, one sentence in ten dropped, one word in twenty replaced, a paragraph moved); a
  distinct pair is the two halves of one Wikipedia article (one topic, same names, different text).

For each shingle size the exact Jaccard of each pair is computed and, for the size in use
(``index.duplicates.SHINGLE_WORDS``), the MinHash estimate; then precision and recall of "copy" at
thresholds from 0.1 to 0.9, and the widest gap between copies and distinct pairs.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index import duplicates  # noqa: E402
from index.loaders import load_articles  # noqa: E402
from index.squad import read_squad  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "newsroom"
PIAF = ROOT.parent / "shared" / "datasets" / "piaf-v1.0" / "piaf-v1.0.json"
THRESHOLDS = [round(0.1 * i, 1) for i in range(1, 10)]
CREDITS = ["(Agence Presse Europe)", "(AFP)", "Avec agences.", "(Continental Wire)", "— Rédaction avec AFP"]


def fixture_pairs() -> list[tuple[str, str, bool]]:
    """(text a, text b, copy) for the hand-made pairs; both texts with their titles."""
    articles = {a.id: a for a in load_articles([FIXTURES / "articles", FIXTURES / "wire"])}
    pairs = []
    for line in (FIXTURES / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            p = json.loads(line)
            a, b = articles[p["a"]], articles[p["b"]]
            pairs.append((f"{a.title}\n{a.text}", f"{b.title}\n{b.text}", bool(p["copy"])))
    return pairs


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def edited_copy(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """A wire copy of ``text``: the edits other outlets make to agency copy."""
    sentences = _sentences(text)
    if len(sentences) > 3:  # the lead rewritten: another of the article's sentences, reworded, opens it
        lead = sentences[rng.randrange(1, len(sentences))].split()
        rng.shuffle(lead)
        sentences[0] = " ".join(lead)
    kept = [s for s in sentences if rng.random() > 0.1] or sentences
    words = " ".join(kept).split()
    words = [rng.choice(vocabulary) if rng.random() < 0.05 else w for w in words]
    body = " ".join(words)
    paragraphs = [p for p in re.split(r"(?<=\.)\s+(?=[A-Z])", body, maxsplit=3)]
    if len(paragraphs) > 2:
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    return " ".join(paragraphs) + " " + rng.choice(CREDITS)


def piaf_pairs(limit: int, seed: int) -> list[tuple[str, str, bool]]:
    """Copies and same-topic distinct pairs from PIAF articles (see the module docstring)."""
    rng = random.Random(seed)
    articles = [a for a in read_squad(PIAF) if len(a.paragraphs) >= 4][:limit]
    vocabulary = [w for a in articles for w in a.text.split() if w.isalpha()]
    pairs = []
    for a in articles:
        half = len(a.paragraphs) // 2
        first = "\n\n".join(p.context for p in a.paragraphs[:half])
        second = "\n\n".join(p.context for p in a.paragraphs[half:])
        pairs.append((first, edited_copy(first, rng, vocabulary), True))
        pairs.append((first, second, False))
    return pairs


def scores(pairs, size: int) -> list[float]:
    return [duplicates.jaccard(duplicates.shingles(a, size), duplicates.shingles(b, size)) for a, b, _ in pairs]


def table(pairs, values: list[float]) -> dict:
    """Precision and recall of "copy" at each threshold, and the gap between the classes."""
    copies = [v for v, (_, _, c) in zip(values, pairs) if c]
    distinct = [v for v, (_, _, c) in zip(values, pairs) if not c]
    rows = {}
    for t in THRESHOLDS:
        tp = sum(v >= t for v in copies)
        fp = sum(v >= t for v in distinct)
        rows[t] = {"precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
                   "recall": round(tp / len(copies), 3) if copies else 1.0}
    return {"copies": len(copies), "distinct": len(distinct), "min_copy": round(min(copies, default=0), 3),
            "max_distinct": round(max(distinct, default=0), 3), "thresholds": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--piaf", type=int, default=120, metavar="N", help="PIAF articles to make pairs from")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sets = {"fixtures": fixture_pairs(), "piaf": piaf_pairs(args.piaf, args.seed)}
    report = {}
    for name, pairs in sets.items():
        report[name] = {f"exact, {size}-word shingles": table(pairs, scores(pairs, size)) for size in (2, 3, 4, 5)}
        estimated = [duplicates.signature(a).jaccard(duplicates.signature(b)) for a, b, _ in pairs]
        report[name][f"MinHash {duplicates.NUM_PERM}, {duplicates.SHINGLE_WORDS}-word (in use)"] = table(
            pairs, estimated)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, rows in report.items():
        for how, t in rows.items():
            print(f"\n{name} ({t['copies']} copies, {t['distinct']} distinct): {how}; "
                  f"lowest copy {t['min_copy']}, highest distinct {t['max_distinct']}")
            print("  threshold  " + "  ".join(f"{x:>5}" for x in THRESHOLDS))
            for key in ("precision", "recall"):
                print(f"  {key:<9}  " + "  ".join(f"{t['thresholds'][x][key]:>5}" for x in THRESHOLDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
