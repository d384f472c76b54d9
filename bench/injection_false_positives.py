"""How often the injection detector (common/injection.py) flags ordinary news text: every sentence of
PIAF's contexts (French Wikipedia, 191 articles), each distinct paragraph once.

    python bench/injection_false_positives.py [--squad FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.injection import instruction_spans  # noqa: E402
from common.sentences import sentence_spans  # noqa: E402
from index.squad import PIAF, read_squad  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", type=Path, default=PIAF)
    args = parser.parse_args()
    sentences, flagged, seen = 0, [], set()
    for article in read_squad(args.squad):
        for paragraph in article.paragraphs:
            if paragraph.context in seen:
                continue
            seen.add(paragraph.context)
            sentences += len(sentence_spans(paragraph.context))
            flagged += [paragraph.context[a:b] for a, b in instruction_spans(paragraph.context)]
    print(f"{len(seen)} paragraphs, {sentences} sentences, {len(flagged)} flagged as instructions")
    for text in flagged[:20]:
        print("  -", text[:160])


if __name__ == "__main__":
    main()
