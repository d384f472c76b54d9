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
