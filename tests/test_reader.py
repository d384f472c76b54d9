"""The reader: its inputs, the shipped weights against their manifest, and answers on real articles."""
import json
import re
from pathlib import Path

import pytest

from rag.reader.inputs import Pair, token_span, windows
from rag.reader.reader import MANIFEST_FILE, WEIGHTS_DIR, WEIGHTS_FILE

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = Path(__file__).resolve().parent / "data" / "articles"
SHIPPED = (WEIGHTS_DIR / WEIGHTS_FILE).exists() and (WEIGHTS_DIR / MANIFEST_FILE).exists()
needs_weights = pytest.mark.skipif(not SHIPPED,
                                   reason="no reader weights in rag/reader/weights: run `rag train reader`")


def test_windows_pack_whole_sentences_and_keep_paragraphs_apart():
    text = "Une phrase courte. Une autre phrase.\n\nUn nouveau paragraphe ici. " + "Mot " * 120 + "fin."
    spans = windows(text, limit=60)
    assert text[spans[0][0]:spans[0][1]] == "Une phrase courte. Une autre phrase."
    assert text[spans[1][0]:spans[1][1]] == "Un nouveau paragraphe ici."
    assert spans[2][1] - spans[2][0] > 60, "a sentence longer than the limit is a window on its own"


def test_token_span_covers_the_answer_or_says_it_cannot():
    # <s> q </s> "Le prix" " est" " 13" " euros" </s>
    pair = Pair((0, 5, 2, 7, 8, 9, 10, 2), (None, None, None, (0, 7), (7, 11), (11, 14), (14, 20), None))
    assert token_span(pair, 12, 20) == (5, 6)
    assert token_span(pair, 0, 2) == (3, 3)
    assert token_span(pair, 15, 40) is None, "an answer running past the window has no span"


@pytest.mark.parametrize("text, span, widened", [
    ("le ticket unitaire à 2,30 euros.", "2,30", "2,30 euros"),
    ("investi 13 milliards de dollars cumulés", "13", "13 milliards de dollars"),
    ("soit 99,4 % des votants", "99,4", "99,4 %"),
    ("2 millions d’euros de dégâts", "2", "2 millions d’euros"),
    ("en 2019, Microsoft", "2019", "2019"),
    ("il a 12 ans", "12", "12"),
    ("Microsoft investit", "cro", "Microsoft"),
    ("aujourd'hui matin", "hui", "aujourd'hui"),
    ("l'OpenAI vaut", "OpenAI", "OpenAI"),
])
def test_spans_are_whole_words_with_their_unit(text, span, widened):
    from rag.reader.reader import whole_words, with_unit

    a, b = whole_words(text, text.index(span), text.index(span) + len(span))
    assert text[a:with_unit(text, a, b)] == widened


def test_platt_scaling_recovers_a_known_logistic_and_survives_wide_margins():
    import numpy as np

    from rag.reader.train import platt

    rng = np.random.default_rng(0)
    margins = rng.normal(0, 3, 4000)
    labels = rng.random(4000) < 1 / (1 + np.exp(-(0.8 * margins - 1.0)))
    scale, offset = platt(margins, labels)
    assert abs(scale - 0.8) < 0.1 and abs(offset + 1.0) < 0.15
    wide = np.concatenate([margins * 40, [-900.0, 700.0]])  # run 3's margins spread like this
    scale, offset = platt(wide, np.concatenate([labels, [False, True]]))
    assert np.isfinite(scale) and np.isfinite(offset) and 0 < scale < 1


@needs_weights
def test_shipped_reader_matches_its_manifest():
    from common.paths import file_sha256

    manifest = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert file_sha256(WEIGHTS_DIR / WEIGHTS_FILE) == manifest["weights_sha256"]
    assert (WEIGHTS_DIR / WEIGHTS_FILE).stat().st_size <= 50 * 1024 * 1024
    piaf = ROOT.parent / "shared" / "datasets" / "piaf-v1.0" / "piaf-v1.0.json"
    if piaf.exists():
        assert file_sha256(piaf) == manifest["data"]["sha256"], "the reader was trained on another PIAF file"
    for key in ("command", "seed", "threshold", "calibration", "metrics", "check", "verifier"):
        assert key in manifest
    verifier = manifest["verifier"]
    assert file_sha256(WEIGHTS_DIR / verifier["file"]) == verifier["sha256"]
    if piaf.exists():
        assert verifier["data"]["sha256"] == manifest["data"]["sha256"], "reader and verifier from one PIAF file"
    for key in ("command", "threshold", "evidence_floor", "metrics", "check"):
        assert key in verifier


@needs_weights
def test_shipped_verifier_reproduces_its_recorded_probabilities():
    from rag.reader.reader import VERIFIER_FILE
    from rag.reader.verifier import Fit

    manifest = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))
    same = Fit.from_dict(json.loads((WEIGHTS_DIR / VERIFIER_FILE).read_text(encoding="utf-8"))["same_language"])
    check = manifest["verifier"]["check"]
    assert {c["condition"] for c in check} == {"own", "hidden", "removed"}
    for c in check:
        assert same.probability(c["features"]) == pytest.approx(c["probability"], abs=1e-6)
    metrics = manifest["verifier"]["metrics"]["verifier_part"]
    assert metrics["answered_own"] >= 0.95 and metrics["threshold"] == manifest["verifier"]["threshold"]


@needs_weights
@pytest.mark.slow
def test_shipped_reader_reproduces_its_recorded_readings(reader):
    check = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))["check"]
    readings = reader.read_each([c["question"] for c in check], [c["window"] for c in check])
    for recorded, now in zip(check, readings):
        assert now.text == recorded["text"]
        assert now.margin == pytest.approx(recorded["margin"], abs=0.05)


@pytest.fixture(scope="module")
def reader(e5_model_dir):
    from rag.reader.reader import Reader

    return Reader.load(e5_model_dir)


@pytest.fixture(scope="module")
def news_pipeline(tmp_path_factory, embedder):
    """The default pipeline over the bundled article and three more (Rome's metro, Lyon, EAST)."""
    from rag.pipeline import Pipeline
    from rag.service import index_paths
    from rag.settings import Settings

    settings = Settings(index_dir=tmp_path_factory.mktemp("news-index"), backend="reader")
    data, _ = index_paths(settings, embedder, [ROOT / "corpus", ARTICLES])
    return Pipeline(settings, embedder, data)


def cited(answer):
    by_n = {c.n: c for c in answer.citations}
    return [by_n[int(n)] for n in re.findall(r"\[(\d+)\]", answer.answer)]


# Known failure, kept visible (strict: the test fails the day it passes, so it is then made a plain test):
# the article lists Mistral AI among OpenAI's competitors; at the threshold that answers 95% of PIAF's
# answerable questions, the verifier accepts the span "Microsoft" (0.10 against 0.025) from a sentence that
# shares no word with the question. README "The reader", what fails.
MISTRAL = pytest.param("Qui a fondé Mistral AI ?", marks=pytest.mark.xfail(
    strict=True, reason="the verifier accepts a span of a sentence without the asked word (README)"))


@needs_weights
@pytest.mark.slow
@pytest.mark.parametrize("question", [
    MISTRAL,
    "Quel est le prix du billet de métro à Rome ?",
    "Quelle est la température record atteinte par le réacteur EAST ?",
])
def test_subject_present_fact_absent_abstains(news_pipeline, question):
    answer = news_pipeline.ask(question)
    assert answer.abstained, answer.answer
    assert answer.reading or answer.notes, "an abstention says why"


@needs_weights
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known failure: the reader's best span is in the sentence naming the "
                   "archaeologists, not in the one saying what they found ('découvert', not 'trouvé'; README)")
def test_the_archaeologists_find_is_answered_from_the_rome_article(news_pipeline):
    answer = news_pipeline.ask("Qu'ont trouvé les archéologues dans le métro de Rome ?")
    assert not answer.abstained, answer.notes
    assert "caserne" in answer.answer
    assert all(c.article_id == "metro-rome-ligne-c" for c in cited(answer))
    assert len(answer.answer) < 150, "a span, not a paragraph"


@needs_weights
@pytest.mark.slow
def test_the_investment_is_answered_with_a_short_cited_span(news_pipeline):
    answer = news_pipeline.ask("Combien Microsoft a-t-il investi dans OpenAI ?")
    assert not answer.abstained
    assert "13 milliards" in answer.answer and len(answer.answer) < 120
    source = cited(answer)[0]
    assert any("13 milliards" in source.text[a:b] for a, b in source.highlights), "the sentence is highlighted"
    assert answer.reading["accepted"] and answer.reading["confidence"] >= answer.reading["threshold"]


@needs_weights
@pytest.mark.slow
def test_an_english_question_gets_the_french_span_as_a_quote(news_pipeline):
    answer = news_pipeline.ask("How much has Microsoft invested in OpenAI?")
    assert not answer.abstained
    assert "«\u00a013 milliards" in answer.answer, "the French span, quoted, after the English lead-in"
    assert answer.answer.startswith("According to the article of 24 June 2025")
