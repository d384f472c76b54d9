"""The answerability verifier: its features, its fits and how the reader backend uses it (scripted reader)."""
import numpy as np
import pytest

from index.embedder import FakeEmbedder
from index.types import Chunk
from rag.backends import Request
from rag.backends.reader import ReaderBackend
from rag.reader.verifier import FEATURES, WORD_FEATURES, Evidence, Fit, Verifier, features, fit, type_mismatch
from rag.types import Hit
from tests.test_reader_backend import ScriptedReader

QUESTION = "Quelle est la température record atteinte par le réacteur EAST ?"
DURATION = "Le réacteur EAST a maintenu un plasma pendant 1 066 secondes, un record de durée."
TEMPERATURE = "Le réacteur EAST a atteint une température record de 100 millions de degrés."


def evidence(sentence: str, span: str, language: str = "fr", passage_language: str = "fr") -> Evidence:
    return Evidence(QUESTION, language, span, 3.0, sentence, sentence, sentence, passage_language, 0.85, 0.84)


def test_a_sentence_lacking_the_asked_word_covers_less_of_the_question():
    near = features(evidence(DURATION, "1 066 secondes"))
    right = features(evidence(TEMPERATURE, "100 millions de degrés"))
    assert right["sentence_cover"] > near["sentence_cover"] + 0.15, (near, right)
    assert set(near) == set(FEATURES)


def test_a_span_repeating_the_question_echoes_it():
    assert features(evidence(TEMPERATURE, "réacteur EAST"))["span_echo"] == 1.0
    assert features(evidence(TEMPERATURE, "100 millions de degrés"))["span_echo"] == 0.0


def test_type_mismatch_for_amounts_and_dates_only():
    assert type_mismatch("Combien Microsoft a-t-il investi ?", "massivement")
    assert not type_mismatch("Combien Microsoft a-t-il investi ?", "13 milliards de dollars")
    assert type_mismatch("Quand le partenariat a-t-il commencé ?", "Azure")
    assert not type_mismatch("En quelle année le partenariat a-t-il commencé ?", "en 2019")
    assert not type_mismatch("Qui dirige Microsoft ?", "Satya Nadella")
    assert not type_mismatch("Combien de voûtes ont été bâties ?", "Vingt-et-un")  # numbers in words
    assert not type_mismatch("Quand l'arche a-t-elle été camouflée ?", "au VIe siècle avant l'ère chrétienne")
    assert not type_mismatch("Quel âge avait-il quand il est parti ?", "onze ans"), "'quand' inside: not 'when'"


def test_a_span_without_the_asked_type_never_answers():
    leaf = {"feature": [0], "threshold": [0.0], "left": [0], "right": [0], "leaf": [True], "value": [9.0],
            "missing_left": [False]}
    sure = Fit(("type_mismatch",), 0.0, (leaf,))
    assert sure.probability({"type_mismatch": 0.0}) > 0.99 and sure.probability({"type_mismatch": 1.0}) == 0.0


def test_the_exported_trees_give_scikit_learns_probabilities():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from rag.reader.verifier import TREES

    rng = np.random.default_rng(0)
    rows = [{"a": float(x), "b": float(y)} for x, y in rng.normal([5, -2], [2, 0.1], (600, 2))]
    labels = [int(r["a"] + 20 * r["b"] + rng.normal() > -35) for r in rows]
    f = fit(rows, labels, ("a", "b"))
    x = np.array([[r["a"], r["b"]] for r in rows])
    expected = HistGradientBoostingClassifier(random_state=0, **TREES).fit(x, labels).predict_proba(x)[:, 1]
    assert [f.probability(r) for r in rows] == pytest.approx(expected, abs=1e-9)
    assert Fit.from_dict(f.to_dict()) == f


def _verifier(threshold: float = 0.5) -> Verifier:
    """Hand-made trees: the share of the question's words in the span's sentence decides (>= 0.8 answers);
    across languages, where words cannot be compared, nothing is accepted."""
    split = {"feature": [FEATURES.index("sentence_cover"), 0, 0], "threshold": [0.8, 0.0, 0.0], "left": [1, 0, 0],
             "right": [2, 0, 0], "leaf": [False, True, True], "value": [0.0, -5.0, 5.0],
             "missing_left": [True, False, False]}
    leaf = {"feature": [0], "threshold": [0.0], "left": [0], "right": [0], "leaf": [True], "value": [-16.0],
            "missing_left": [False]}
    return Verifier(Fit(FEATURES, 0.0, (split,)), Fit(tuple(f for f in FEATURES if f not in WORD_FEATURES), 0.0,
                                                      (leaf,)), threshold, 0.7)


def test_across_languages_the_fit_without_word_features_decides():
    v = _verifier()
    same, _ = v.probability(evidence(TEMPERATURE, "100 millions de degrés"))
    across, values = v.probability(evidence(TEMPERATURE, "100 millions de degrés", language="en"))
    assert same > 0.5 and across == pytest.approx(1 / (1 + np.exp(16.0)))
    assert "sentence_cover" in values


FOUNDED = "Mistral AI a été fondé en 2023 par Arthur Mensch."
LISTED = "OpenAI affronte des concurrents comme Anthropic, Mistral AI et Meta."


@pytest.mark.parametrize("text, span, answered", [(FOUNDED, "Arthur Mensch", True), (LISTED, "Anthropic", False)])
def test_the_backend_answers_only_what_the_verifier_accepts(text, span, answered):
    question = "Qui a fondé Mistral AI ?"
    reader = ScriptedReader(span, 0.9)
    reader.manifest = {"verifier": {"same_language": _verifier().same.to_dict(),
                                    "across_languages": _verifier().across.to_dict(),
                                    "threshold": 0.5, "evidence_floor": 0.7}}
    backend = ReaderBackend(FakeEmbedder(32), reader)
    assert backend.evidence_floor == 0.7
    chunk = Chunk("c1", "mistral", "Mistral AI", text, 0, len(text), language="fr")
    out = backend.generate(Request(question, (Hit(chunk, 0.9),), "fr"))
    assert out.abstained != answered, out
    expected = features(Evidence(question, "fr", span, 2.0, text, text, text, "fr", 0.9, 0.0))["sentence_cover"]
    assert out.reading["features"]["sentence_cover"] == pytest.approx(expected, abs=1e-4)
    if not answered:
        assert "the articles mention Mistral" in out.notes[0] and "«Anthropic»" in out.notes[0]
