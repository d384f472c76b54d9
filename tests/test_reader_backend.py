"""The reader backend's logic, with a scripted reader (the real one is in test_reader.py)."""
from index.embedder import FakeEmbedder
from index.types import Chunk
from rag.backends import Request
from rag.backends.reader import ReaderBackend
from rag.reader.reader import Reading
from rag.reader.verifier import FEATURES
from rag.types import Hit

TEXT = ("Microsoft a investi 13 milliards de dollars dans OpenAI depuis 2019. "
        "Satya Nadella dirige Microsoft depuis 2014.")


class ScriptedReader:
    """Finds ``answer`` in any window holding it, with ``confidence``; elsewhere nothing."""

    name, threshold = "reader:scripted", 0.5

    def __init__(self, answer: str, confidence: float):
        self.answer, self.confidence, self.asked = answer, confidence, []

    def read(self, question, texts):
        self.asked.append(list(texts))
        out = []
        for t in texts:
            a = t.find(self.answer)
            out.append(Reading(a, a + len(self.answer), self.answer, 2.0, self.confidence) if a >= 0
                       else Reading(0, 0, "", -5.0, 0.01))
        return out


def request(question: str, language: str = "fr") -> Request:
    chunk = Chunk("c1", "microsoft", "Microsoft et OpenAI", TEXT, 0, len(TEXT), language="fr")
    return Request(question, (Hit(chunk, 0.9),), language)


def test_a_confident_span_answers_cited_with_its_sentence_highlighted():
    backend = ReaderBackend(FakeEmbedder(32), ScriptedReader("13 milliards de dollars", 0.9))
    out = backend.generate(request("Combien Microsoft a-t-il investi dans OpenAI ?"))
    assert out.text == "13 milliards de dollars [1]."
    assert out.highlights == {1: [(0, TEXT.index(" Satya"))]}
    assert out.reading["accepted"] and out.reading["confidence"] == 0.9


def test_below_the_threshold_it_abstains_and_keeps_the_rejected_span():
    backend = ReaderBackend(FakeEmbedder(32), ScriptedReader("Satya Nadella", 0.2))
    out = backend.generate(request("Qui a fondé Microsoft ?"))
    assert out.abstained and out.text == ""
    reading = {k: v for k, v in out.reading.items() if k != "features"}
    assert reading == {"text": "Satya Nadella", "n": 1, "confidence": 0.2, "reader_confidence": 0.2, "margin": 2.0,
                       "threshold": 0.5, "accepted": False}
    assert set(out.reading["features"]) == set(FEATURES), "an editor sees what was weighed"
    assert "the articles mention Microsoft" in out.notes[0] and "«Satya Nadella»" in out.notes[0]


def test_the_threshold_setting_overrides_the_readers_own():
    backend = ReaderBackend(FakeEmbedder(32), ScriptedReader("Satya Nadella", 0.2), threshold=0.1)
    assert not backend.generate(request("Qui dirige Microsoft ?")).abstained


def test_an_english_question_over_french_passages_gets_a_quote():
    backend = ReaderBackend(FakeEmbedder(32), ScriptedReader("13 milliards de dollars", 0.9))
    out = backend.generate(request("How much did Microsoft invest in OpenAI?", language="en"))
    assert out.text == "«\u00a013 milliards de dollars\u00a0» [1]."


def test_a_why_question_gets_the_whole_sentence():
    backend = ReaderBackend(FakeEmbedder(32), ScriptedReader("13 milliards", 0.9))
    out = backend.generate(request("Pourquoi Microsoft attend-il des retours ?"))
    assert out.text == TEXT[:TEXT.index(" Satya")] + " [1]"


def test_only_the_best_windows_are_read():
    reader = ScriptedReader("13 milliards", 0.9)
    ReaderBackend(FakeEmbedder(32), reader, read_windows=1).generate(request("Combien ?"))
    assert len(reader.asked[0]) == 1


class ByText:
    """Finds each of ``answers`` (text -> confidence) in the windows that hold it; elsewhere nothing."""

    name, threshold = "reader:scripted", 0.5

    def __init__(self, answers: dict[str, float]):
        self.answers = answers

    def read(self, question, texts):
        out = []
        for t in texts:
            found = [(a, c) for a, c in self.answers.items() if a in t]
            a, c = found[0] if found else ("", 0.01)
            out.append(Reading(t.find(a), t.find(a) + len(a), a, 2.0, c) if a else Reading(0, 0, "", -5.0, 0.01))
        return out


def dated_request(question: str, latest: bool) -> Request:
    """The ticket's price told by an older and a newer article."""
    old = Chunk("c1", "ticket-2024", "Ticket", "Le ticket unitaire coûte 2,10 euros depuis février.", 0, 51,
                language="fr", date="2024-12-03")
    new = Chunk("c2", "ticket-2025", "Ticket", "Le ticket unitaire coûte désormais 2,30 euros.", 0, 46,
                language="fr", date="2025-05-14")
    return Request(question, (Hit(old, 0.9), Hit(new, 0.85)), "fr", latest=latest)


def test_the_newest_articles_span_leads_and_the_older_one_follows_as_earlier():
    backend = ReaderBackend(FakeEmbedder(32), ByText({"2,10 euros": 0.8, "2,30 euros": 0.6}))
    out = backend.generate(dated_request("Quel est le prix actuel du ticket ?", latest=True))
    assert out.text == ("Selon l'article du 14 mai 2025 : 2,30 euros [2]. "
                        "Plus tôt, l'article du 3 décembre 2024 indiquait : 2,10 euros [1].")
    assert out.reading["text"] == "2,30 euros" and set(out.highlights) == {1, 2}


def test_a_weak_span_of_a_newer_article_does_not_lead():
    backend = ReaderBackend(FakeEmbedder(32), ByText({"2,10 euros": 0.8, "2,30 euros": 0.3}))
    out = backend.generate(dated_request("Quel est le prix actuel du ticket ?", latest=True))
    assert out.text == "Selon l'article du 3 décembre 2024 : 2,10 euros [1]."


def test_one_answer_told_by_two_articles_is_given_once():
    backend = ReaderBackend(FakeEmbedder(32), ByText({"Le ticket unitaire coûte": 0.8}))
    out = backend.generate(dated_request("Que coûte le ticket ?", latest=False))
    assert "Plus tôt" not in out.text and out.text.count("[") == 1


def test_a_correction_note_is_never_read_as_the_answer():
    text = ("La future ligne comptera 14 stations.\n\nCorrection (16 février 2024) : une version précédente de cet "
            "article indiquait à tort que la ligne F compterait 16 stations.")
    chunk = Chunk("c1", "tram", "Tram", text, 0, len(text), language="fr")
    question = "Combien de stations comptera la ligne F ?"
    wrong = ReaderBackend(FakeEmbedder(32), ScriptedReader("16 stations", 0.9))
    assert wrong.generate(Request(question, (Hit(chunk, 0.9),), "fr")).abstained
    right = ReaderBackend(FakeEmbedder(32), ScriptedReader("14 stations", 0.9))
    assert right.generate(Request(question, (Hit(chunk, 0.9),), "fr")).text == "14 stations [1]."


def test_only_a_value_of_the_same_kind_is_given_as_earlier():
    from rag.backends.reader import _same_kind

    assert _same_kind("2,30 euros", "2,10 euros") and _same_kind("au printemps 2026", "en septembre 2025")
    assert _same_kind("Priya Nandakumar", "Daniel Frost") and _same_kind("neuf", "onze")
    assert not _same_kind("soixante", "190 mètres") and not _same_kind("four months", "400 jobs")
    assert not _same_kind("In both directions", "Paris’s Gare de l’Est")
