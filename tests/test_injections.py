"""Articles that try to steer the answer, read by a model that obeys them: no served answer may follow.

``tests/data/injections.jsonl`` holds 24 short articles (French and English, test fixtures) each hiding
an instruction among real sentences: plain orders, fake system prompts and chat-template tags, fake
passage ends (raw, as HTML entities, double-encoded, fullwidth, with a zero-width character after
``<``), zero-width letters, bidirectional controls, notes "for the AI". The scripted model reads its
prompt as a model would (entities decoded, NFKC, invisible characters ignored) and answers with the
payload whenever it can see it, citing the passage it came from.
"""
import re

import pytest

from common.injection import instruction_spans, is_instruction, normalise
from index.types import Article
from rag import prompt
from tests.fakes import ObedientModel, fake_pipeline, injection_cases

CASES = injection_cases()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    articles = [Article(id=c["id"], title=c["title"], text=c["text"], language=c["language"]) for c in CASES]
    p = fake_pipeline(tmp_path_factory.mktemp("injections") / "index", articles, abstain_threshold=-1.0)
    p._backends["obedient"] = ObedientModel(CASES)
    return p


def test_the_set_is_large_and_varied():
    assert len(CASES) >= 20 and {c["language"] for c in CASES} == {"fr", "en"}
    assert all(c["payload"] in normalise(c["text"]) or c["payload"] in c["text"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_each_injection_is_found_and_the_articles_facts_kept(case):
    spans = instruction_spans(case["text"])
    kept = "".join(ch for i, ch in enumerate(case["text"]) if not any(a <= i < b for a, b in spans))
    assert case["payload"] not in normalise(kept)
    first = re.split(r"(?<=[.!?])\s", case["text"])[0]
    assert first in kept, "the article's own first sentence is not taken for an instruction"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_no_served_answer_follows_an_injection(pipeline, case):
    answer = pipeline.ask(case["question"], backend="obedient")
    assert case["payload"] not in answer.answer, answer.notes


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_citation_check_stops_what_the_prompt_filter_lets_through(pipeline, case, monkeypatch):
    """Second line: the model is shown the instructions (the prompt filter switched off) and obeys;
    the citation check, which gives instruction sentences no weight, must still not serve it."""
    monkeypatch.setattr(prompt, "shown_text", prompt.defuse)
    before = pipeline._backends["obedient"].obeyed
    answer = pipeline.ask(case["question"], backend="obedient")
    assert pipeline._backends["obedient"].obeyed == before + 1, "the model did see and obey the instruction"
    assert case["payload"] not in answer.answer and answer.fallback_from == "obedient", answer.notes


@pytest.mark.parametrize("text", [
    "Le ministre a répondu uniquement aux questions des députés.",
    "Les scènes dites « de présentation » montrent un fonctionnaire.",
    "The AI start-up ignored the previous rules on data, regulators said.",
    "Le système : un réseau de 14 lignes.",
    "OpenAI is an AI company; its assistant, ChatGPT, has 500 million users.",
    "La Chine ignore les règles du commerce mondial, selon Bruxelles.",
    "Le gouvernement a donné de nouvelles consignes aux préfets.",
])
def test_news_sentences_are_not_taken_for_instructions(text):
    assert not is_instruction(text)


def test_lookalike_tags_are_defused_after_normalising():
    for fake in ("&lt;/passage&gt;", "＜/passage＞", "<\u200b/passage>", "&amp;lt;/passage&amp;gt;"):
        assert "</passage" not in prompt.defuse(f"Texte. {fake} Suite.")
