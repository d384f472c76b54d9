"""Follow-up questions made standalone: the documented heuristic, the model path and its fallback."""
import pytest

from common.errors import BackendError
from rag.backends.chat import Completion
from rag.pipeline import Pipeline
from rag.rewrite import heuristic, last_question, rewrite
from tests.fakes import fake_pipeline

MS = "Combien Microsoft a-t-il investi dans OpenAI ?"


@pytest.mark.parametrize("previous, question, standalone", [
    ("Combien Google a-t-il investi dans Anthropic ?", "et Microsoft ?",
     "Combien Microsoft a-t-il investi dans Anthropic ?"),
    ("How much did Microsoft invest in OpenAI?", "What about Google?", "How much did Google invest in OpenAI?"),
    (MS, "Et en 2024 ?", "Combien Microsoft a-t-il investi dans OpenAI en 2024 ?"),
    (MS, "Quand l'a-t-il annoncé ?", f"Quand l'a-t-il annoncé ? ({MS})"),
    ("Qui dirige OpenAI ?", "Depuis quand ?", "Depuis quand ? (Qui dirige OpenAI ?)"),
], ids=["fr-name", "en-name", "fr-no-name", "fr-pronoun", "fr-short"])
def test_heuristic_rewrites_follow_ups(previous, question, standalone):
    result = heuristic(question, previous)
    assert (result.question, result.method) == (standalone, "heuristic")
    assert question in result.note and standalone in result.note


@pytest.mark.parametrize("question", ["Qui dirige Nvidia ?", "Pourquoi Sam Altman a-t-il appelé Satya Nadella ?",
                                      "What did the Wall Street Journal report about the partnership?"])
def test_standalone_questions_are_left_alone(question):
    assert heuristic(question, MS).question == question and heuristic(question, MS).method == "none"


def test_without_history_nothing_changes():
    assert rewrite("et Microsoft ?", []).question == "et Microsoft ?"
    assert last_question([{"role": "assistant", "content": "x"}]) == ""
    assert last_question([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c "}]) == "c"


class Chat:
    """A logic fake of a chat model: a fixed reply, or an error."""

    def __init__(self, reply="", error=None):
        self.reply, self.error, self.messages = reply, error, None

    def complete(self, messages, max_tokens, on_delta=None):
        self.messages = messages
        if self.error:
            raise self.error
        return Completion(self.reply, "fake")


def test_the_model_rewrites_when_there_is_one():
    chat = Chat("Combien Microsoft a-t-il investi dans Anthropic ?")
    history = [{"role": "user", "content": "Combien Google a-t-il investi dans Anthropic ?"},
               {"role": "assistant", "content": "Deux milliards [1]."}]
    result = rewrite("et Microsoft ?", history, chat)
    assert (result.question, result.method) == ("Combien Microsoft a-t-il investi dans Anthropic ?", "llm")
    assert ("Deux milliards" in chat.messages[-1]["content"]
            and "Last question: et Microsoft ?" in chat.messages[-1]["content"])


@pytest.mark.parametrize("chat", [Chat(error=BackendError("timed out")), Chat("line one\nline two"), Chat("")],
                         ids=["error", "two-lines", "empty"])
def test_the_heuristic_takes_over_when_the_model_fails(chat):
    result = rewrite("et Microsoft ?", [{"role": "user", "content": "Combien Google a-t-il investi dans Anthropic ?"}],
                     chat)
    assert result.question == "Combien Microsoft a-t-il investi dans Anthropic ?" and result.method == "heuristic"
    assert "the model failed" in result.note


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return fake_pipeline(tmp_path_factory.mktemp("idx"))


def test_pipeline_rewrites_before_retrieval(pipeline):
    history = [{"role": "user", "content": "Combien Google a-t-il investi dans OpenAI ?"},
               {"role": "assistant", "content": "Les articles ne le disent pas."}]
    answer = pipeline.ask("et Microsoft ?", history=history)
    assert answer.question == "Combien Microsoft a-t-il investi dans OpenAI ?" and answer.asked == "et Microsoft ?"
    import html

    from ui.render import answer_html

    shown = html.unescape(answer_html(answer.to_dict(), "a1", "fr"))
    assert "Compris comme : Combien Microsoft a-t-il investi dans OpenAI ?" in shown, "the UI says how it understood"
    assert answer.notes[0].startswith("follow-up rewritten from the history: 'et Microsoft ?'")
    direct = pipeline.ask("Combien Microsoft a-t-il investi dans OpenAI ?")
    assert [c.chunk_id for c in answer.citations] == [c.chunk_id for c in direct.citations]
    assert answer.answer == direct.answer


def test_rewrite_off_keeps_the_question(pipeline):
    off = Pipeline(pipeline.settings.model_copy(update={"rewrite": "off"}), pipeline.embedder, pipeline.data)
    answer = off.ask("et Microsoft ?", history=[{"role": "user", "content": "Combien Google a-t-il investi ?"}])
    assert answer.question == "et Microsoft ?" and answer.asked == ""
