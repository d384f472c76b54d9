"""The chat paints deltas at most every PAINT_INTERVAL: an answer that arrives whole is painted once."""
import time

from ui import chat


class WordByWord:
    """A pipeline whose answer streams as one delta a word, ``pause`` seconds apart."""

    def __init__(self, words: int, pause: float = 0.0):
        self.words, self.pause = words, pause

    def ask_stream(self, question, **options):
        for i in range(self.words):
            time.sleep(self.pause)
            yield {"event": "delta", "data": {"text": f"mot{i} "}}
        yield {"event": "done", "data": {"answer": "fin", "abstained": False, "citations": [], "question": question,
                                          "backend": "fake", "timings_ms": {"total": 1}}}


def test_an_answer_that_arrives_whole_is_painted_once():
    painted = list(chat.answer_stream(lambda: WordByWord(40), "q", [], "fr", {}))
    assert len(painted) == 2, "the 'searching' placeholder, then the finished answer"
    assert painted[-1][1]["answer"] == "fin"


def test_a_slow_stream_is_still_painted_as_it_comes(monkeypatch):
    monkeypatch.setattr(chat, "PAINT_INTERVAL", 0.02)
    painted = list(chat.answer_stream(lambda: WordByWord(6, pause=0.03), "q", [], "fr", {}))
    streaming = [html for html, done in painted[1:] if done is None]
    assert len(streaming) >= 4 and "mot0" in streaming[0]
