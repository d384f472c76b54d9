"""Each answer-quality metric on hand-made cases whose right value is known."""
import pytest

from eval.dataset import EvalItem
from eval.gate import EvalConfig, check_gate
from eval.metrics import (
    SupportTest,
    citation_precision,
    claims,
    evidence_rank,
    exact_match,
    find_span,
    groundedness,
    normalize_answer,
    similarity,
    token_f1,
    token_recall,
)
from eval.runner import _result, score_answer, summarize
from index.embedder import CachedEmbedder, FakeEmbedder

PASSAGE = ("Depuis 2019, Microsoft et OpenAI ont construit une relation solide. Microsoft a investi "
           "13 milliards de dollars cumulés. Le siège est à San Francisco.")
OTHER = "La ratatouille se cuit lentement au four avec des aubergines."


@pytest.fixture(scope="module")
def emb():
    return CachedEmbedder(FakeEmbedder(64))


@pytest.mark.parametrize("text, language, expected", [
    ("13 milliards de dollars", "fr", "13000000000 dollars"),
    ("13 000 000 000 $", "fr", "13000000000 dollars"),
    ("13\u202f000\u202f000\u202f000 dollars", "fr", "13000000000 dollars"),
    ("$13 billion", "en", "dollars 13000000000"),
    ("13,000 people", "en", "13000 people"),
    ("1,5 million d’euros", "fr", "1500000 euros"),
    ("2 billions", "fr", "2000000000000"),  # a French billion is 10^12
    ("L’Élysée a dit : « non » ! [2]", "fr", "elysee dit non"),
    ("The answer is 50 %.", "en", "answer is 50 pourcent"),
])
def test_normalizer(text, language, expected):
    assert normalize_answer(text, language) == expected


def test_exact_match_with_french_number_formats():
    assert exact_match("13 milliards de dollars [1]", "13 000 000 000 de dollars") == 1.0
    assert exact_match("Environ 13 milliards de dollars.", "13 milliards de dollars") == 0.0
    assert exact_match("Le Wall Street Journal", "wall street journal") == 1.0


def test_token_f1_and_recall():
    # prediction tokens: 13000000000 dollars cumules (3); expected: environ 13000000000 dollars (3); 2 shared
    assert token_f1("13 milliards de dollars cumulés", "environ 13 000 000 000 dollars") == pytest.approx(2 / 3)
    assert token_recall("13 milliards de dollars cumulés", "environ 13 000 000 000 dollars") == pytest.approx(2 / 3)
    assert token_f1("Depuis 2019 [1]", "depuis 2019") == 1.0
    assert token_f1("Copilot", "Azure") == 0.0
    assert token_f1("", "Azure") == 0.0 and token_f1("", "") == 1.0
    # recall ignores the extra words of a sentence-long answer
    assert token_recall("Microsoft a bâti sa stratégie avec Copilot, Bing AI et Azure AI Studio.",
                        "Copilot, Bing AI et Azure AI Studio") == 1.0


def test_find_span_ignores_case_accents_spacing_and_quote_style():
    text = "Cette discussion, présentée comme “constructive et  transparente” selon Altman."
    a, b = find_span(text, 'presentee comme "CONSTRUCTIVE et transparente"')
    assert text[a:b] == "présentée comme “constructive et  transparente”"
    assert find_span(text, "destructive") is None and find_span(text, "  ") is None


def test_hit_and_reciprocal_rank():
    passages = [OTHER, "Rien ici.", PASSAGE, PASSAGE]
    assert evidence_rank(passages, "investi 13 milliards de dollars") == 3
    assert evidence_rank(passages, "absent de partout") is None


def test_claims_split_answers_and_their_citations():
    assert claims("A dit oui. [1] B dit non [2][3]. C sans source.") == [
        ("A dit oui.", (1,)), ("B dit non", (2, 3)), ("C sans source.", ())]
    assert claims("Une seule phrase [2]") == [("Une seule phrase", (2,))]


def test_groundedness_counts_sentences_supported_by_what_they_cite(emb):
    test, passages = SupportTest(), {1: PASSAGE, 2: OTHER}
    assert groundedness("Microsoft a investi 13 milliards de dollars cumulés. [1]", passages, emb, test) == 1.0
    # the same true sentence citing the wrong passage is not grounded
    assert groundedness("Microsoft a investi 13 milliards de dollars cumulés. [2]", passages, emb, test) == 0.0
    # one of two sentences supported; an uncited sentence never is; a citation beyond the passages neither
    assert groundedness("Le siège est à San Francisco. [1] Google a tout racheté.", passages, emb, test) == 0.5
    assert groundedness("Le siège est à San Francisco. [7]", passages, emb, test) == 0.0
    assert groundedness("", passages, emb, test) is None


def test_support_test_beyond_verbatim(emb):
    strict, loose = SupportTest(min_overlap=0.5, min_cosine=0.99), SupportTest(min_overlap=0.5, min_cosine=-1.0)
    claim = "Microsoft a investi 13 milliards de dollars cumulés dans OpenAI"  # not verbatim: "dans OpenAI"
    assert not strict.supports(claim, PASSAGE, emb)
    assert loose.supports(claim, PASSAGE, emb), "most content words shared, cosine test off"
    assert not loose.supports("Google rachète Nvidia pour un prix inconnu", PASSAGE, emb), "no shared words"
    cross = SupportTest(cross_cosine=-1.0)
    assert cross.supports("Microsoft invested thirteen billion dollars in the company", PASSAGE, emb)
    assert not SupportTest(cross_cosine=1.01).supports("Microsoft invested thirteen billion dollars", PASSAGE, emb)


def test_citation_precision(emb):
    test, passages = SupportTest(), {1: PASSAGE, 2: OTHER, 3: PASSAGE}
    evidence = "Microsoft a investi 13 milliards de dollars cumulés."
    assert citation_precision("X [1] Y [3]", passages, evidence, emb, test) == 1.0
    assert citation_precision("X [1] Y [2]", passages, evidence, emb, test) == 0.5
    assert citation_precision("X [2]", passages, evidence, emb, test) == 0.0
    assert citation_precision("Pas de source.", passages, evidence, emb, test) is None


def test_similarity(emb):
    assert similarity("Depuis 2019. [1]", "Depuis 2019.", emb) == pytest.approx(1.0, abs=1e-4)
    assert similarity("Copilot et Azure", "ratatouille aux aubergines", emb) < 0.5


def _answer(text, abstained=False, passages=(PASSAGE, OTHER)):
    return {"answer": text, "abstained": abstained,
            "citations": [{"n": n, "text": t} for n, t in enumerate(passages, 1)]}


def _item(answerable=True, **fields):
    base = dict(id="x", question="Combien ?", expected_answer="13 milliards de dollars",
                evidence="investi 13 milliards de dollars", answerable=answerable, language="fr")
    return EvalItem(**{**base, **fields})


def test_abstention_metrics(emb):
    config = EvalConfig()
    unanswerable = _item(answerable=False, expected_answer="", evidence="")
    declined = score_answer(unanswerable, _answer("Les articles ne le disent pas.", abstained=True), emb, config)
    answered = score_answer(unanswerable, _answer("Le siège est à San Francisco. [1]"), emb, config)
    assert declined["abstention"] == 1.0 and answered["abstention"] == 0.0
    assert declined["f1"] is None and declined["hit_at_k"] is None and declined["wrong_abstention"] is None
    wrong = score_answer(_item(), _answer("Les articles ne le disent pas.", abstained=True), emb, config)
    assert wrong["wrong_abstention"] == 1.0 and wrong["f1"] == 0.0 and wrong["similarity"] == 0.0
    assert wrong["hit_at_k"] == 1.0, "retrieval is scored even when the answer abstains"
    assert wrong["citation_precision"] is None and wrong["groundedness"] is None
    results = [_result(unanswerable, {}, declined, config), _result(unanswerable, {}, answered, config),
               _result(_item(), {}, wrong, config)]
    summary = summarize(results)
    assert summary["abstention_accuracy"] == 0.5 and summary["wrong_abstention_rate"] == 1.0
    assert [r.ok for r in results] == [True, False, False] and summary["pass_rate"] == pytest.approx(1 / 3, abs=1e-4)


def test_a_right_answer_scores_and_passes(emb):
    config = EvalConfig()
    values = score_answer(_item(), _answer("Microsoft a investi 13 milliards de dollars cumulés. [1]",
                                           passages=(OTHER, PASSAGE)), emb, config)
    assert values["hit_at_k"] == 1.0 and values["mrr"] == 0.5
    assert values["recall"] == 1.0 and values["exact_match"] == 0.0
    assert values["citation_precision"] == 0.0, "it cites passage 1, which lacks the evidence"
    assert values["groundedness"] == 0.0
    values = score_answer(_item(), _answer("Microsoft a investi 13 milliards de dollars cumulés. [2]",
                                           passages=(OTHER, PASSAGE)), emb, config)
    assert values["citation_precision"] == 1.0 and values["groundedness"] == 1.0
    assert _result(_item(), {}, values, config).ok


def test_gate_checks_minimums_and_maximums():
    gate = {"min": {"hit_at_k": 0.9, "pass_rate": 0.5}, "max": {"wrong_abstention_rate": 0.1}}
    assert check_gate({"hit_at_k": 0.9, "pass_rate": 0.5, "wrong_abstention_rate": 0.1}, gate) == []
    failures = check_gate({"hit_at_k": 0.89, "pass_rate": 0.6, "wrong_abstention_rate": 0.2}, gate)
    assert failures == ["hit_at_k = 0.89 is below the minimum 0.9",
                        "wrong_abstention_rate = 0.2 is above the maximum 0.1"]
    assert check_gate({}, {"min": {"judge": 0.5}}) == ["judge = n/a is below the minimum 0.5"]
