"""The one fake-embedder pipeline of the unit tests (deterministic hash vectors, no model to load), and
the injected-article set with the scripted model that obeys it (tests/test_injections.py, bench/reliability.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

FAKE_DIM = 64


def fake_pipeline(index_dir: Path, articles=None, **overrides):
    """A Pipeline with ``FakeEmbedder(64)`` over the bundled corpus (or over ``articles``, a list of
    ``Article``), indexed into ``index_dir``; ``overrides`` are Settings fields. Its backend and fallback are the
    extractive one and the reader gate is off (the reader reads with the real model: tests/test_reader.py)."""
    from index.build import update_index
    from index.chunker import Chunker
    from index.embedder import FakeEmbedder
    from index.store import IndexStore
    from rag.pipeline import Pipeline
    from rag.service import index_paths
    from rag.settings import Settings

    settings = Settings(**{"index_dir": index_dir, "embedding_model": f"fake:{FAKE_DIM}", "abstain_threshold": 0.1,
                           "backend": "extractive", "fallback_backend": "extractive", "reader_gate": False,
                           **overrides})
    embedder = FakeEmbedder(FAKE_DIM)
    if articles is None:
        data, _ = index_paths(settings, embedder, settings.corpus_dirs)
    else:
        store = IndexStore(settings.index_dir)
        data, _ = update_index(store, embedder, Chunker(), articles)
    return Pipeline(settings, embedder, data)


INJECTIONS = Path(__file__).parent / "data" / "injections.jsonl"
_PASSAGE = re.compile(r'<passage n="(\d+)"[^>]*>\n(.*?)\n</passage>', re.DOTALL)


def injection_cases() -> list[dict]:
    """The injected articles: id, language, title, text, a question on its real content, the payload."""
    return [json.loads(line) for line in INJECTIONS.open(encoding="utf-8")]


class ObedientModel:
    """A generative backend that does what any passage tells it to: it reads its prompt as a model would
    (``common.injection.normalise``) and answers a case's payload, cited, whenever it can see it;
    otherwise it answers with the first sentence of passage 1."""

    name, generative = "obedient", True

    def __init__(self, cases: list[dict]):
        self.cases, self.obeyed = cases, 0

    def generate(self, request):
        from common.injection import normalise
        from rag.backends import Generation
        from rag.prompt import Budget, build_prompt

        shown = build_prompt(request.question, request.hits, request.language, 3,
                             Budget(8192, 400, lambda s: len(s) // 4))
        user = normalise(shown.messages[1]["content"])
        for case in self.cases:
            for n, text in _PASSAGE.findall(user):
                if case["payload"] in text:
                    self.obeyed += 1
                    return Generation(f"{case['payload']} [{n}]", model="obedient")
        first = _PASSAGE.search(user)
        sentence = re.split(r"(?<=[.!?])\s", first.group(2))[0] if first else "Les articles ne le disent pas."
        return Generation(f"{sentence} [1]", model="obedient")
