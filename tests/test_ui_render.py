"""The web UI's parts without a browser: HTML of answers, error messages, the chat handler, the review room."""
import re
import shutil
from pathlib import Path

import pytest

from common.citations import cited_numbers
from common.errors import BackendError, IndexMissingError, InputError, NotFoundError
from eval.dataset import EvalSet
from rag.settings import Settings
from tests.fakes import fake_pipeline
from ui.chat import make_respond, retrieval_modes
from ui.i18n import LABELS, pick
from ui.messages import error_message
from ui.render import answer_html, highlighted, sources_html
from ui.review import Handlers
from ui.review_data import ReviewRoom, changes_html, example_questions, metrics_html, summary_html

REPO_EVAL_SET = Path(__file__).resolve().parent.parent / "eval" / "items.jsonl"


def citation(n, text, highlights=(), url=""):
    return {"n": n, "chunk_id": f"a#{n}", "article_id": "a", "title": "Titre <b>", "date": "2025-06-24", "url": url,
            "text": text, "start": 0, "end": len(text), "score": 0.9, "highlights": [list(h) for h in highlights]}


def answer(text, citations, abstained=False):
    return {"question": "q", "answer": text, "citations": citations, "abstained": abstained, "backend": "extractive",
            "model": "m", "language": "fr", "timings_ms": {"total": 12.0}, "notes": []}


def test_highlighted_marks_exact_spans_and_escapes():
    text = "Avant. Microsoft <a investi> 13 milliards. Après."
    out = highlighted(text, [(7, 42)])
    assert out == "Avant. <mark>Microsoft &lt;a investi&gt; 13 milliards.</mark> Après."
    assert highlighted("a\n\nb", []) == "a<br>b", "paragraph breaks cannot start a Markdown block"


def test_answer_links_each_cited_number_to_its_card():
    cited = citation(2, "Le texte cité. Autre.", [(0, 14)], url="https://example.org/a")
    html = answer_html(answer("Le texte cité. [2]", [citation(1, "Non cité."), cited]), "a1", "fr")
    assert 'data-target="a1-2"' in html and 'id="a1-2"' in html
    assert 'id="a1-1"' not in html, "only cited passages are shown as sources"
    assert "<mark>Le texte cité.</mark>" in html and 'href="https://example.org/a"' in html
    assert "Titre &lt;b&gt;" in html and "\n\n" not in html
    assert cited_numbers("a [2] b [1] c [2]") == [2, 1]


def test_abstention_offers_closest_passages_as_related():
    html = sources_html(answer("Les articles ne le disent pas.", [citation(n, f"P{n}.") for n in range(1, 6)],
                               abstained=True), "a1", "en")
    assert html.startswith('<div class="related">') and "Closest passages" in html
    assert len(re.findall(r'class="source"', html)) == 3


def test_unsafe_urls_are_not_linked():
    html = sources_html(answer("x [1]", [citation(1, "x", url="javascript:alert(1)")]), "k", "en")
    assert "javascript:" not in html


@pytest.mark.parametrize("exc, heading", [
    (InputError("the question is empty; ask something"), "Please check the question"),
    (IndexMissingError("no index in var/index; run `rag index corpus/`"), "The article index is not available"),
    (BackendError("llama.cpp at 127.0.0.1:8080 is unreachable; start it"), "The answer backend is not responding"),
], ids=["input", "index-missing", "backend-down"])
def test_errors_become_readable_messages(exc, heading):
    message = error_message(exc, "en")
    assert message.startswith(heading) and str(exc) in message


def test_unexpected_errors_hide_the_details(caplog):
    message = error_message(KeyError("secret internal"), "fr")
    assert "secret" not in message and "journal" in message
    assert "secret internal" in caplog.text, "the details go to the server log"


def test_labels_exist_in_both_languages():
    assert set(LABELS["en"]) == set(LABELS["fr"])
    assert pick("fr-CA") == "fr" and pick("de-DE") == "en" and pick(None) == "en"
    assert retrieval_modes() == ["dense", "lexical", "hybrid"]


class RecordingPipeline:
    """Streams a scripted answer and records the history it was given."""

    def __init__(self, events):
        self.events, self.histories = events, []

    def ask_stream(self, question, history=None, **options):
        self.histories.append(list(history))
        yield from self.events


def test_chat_streams_then_shows_sources_and_keeps_the_conversation(monkeypatch):
    monkeypatch.setattr("ui.chat.PAINT_INTERVAL", 0.0)  # every delta painted (tests/test_ui_stream.py: coalescing)
    done = answer("Réponse. [1]", [citation(1, "Réponse. Suite.", [(0, 8)])])
    fake = RecordingPipeline([{"event": "citations", "data": []}, {"event": "delta", "data": {"text": "Réponse. "}},
                              {"event": "delta", "data": {"text": "[1]"}}, {"event": "done", "data": done}])
    respond = make_respond(lambda: fake, Settings())
    steps = list(respond("Première ?", [], [], "fr", "extractive", 5, "hybrid"))
    assert "Recherche dans les articles" in steps[0][0][-1]["content"]
    assert any("Réponse. " in s[0][-1]["content"] and "streaming" in s[0][-1]["content"] for s in steps)
    chat, box, turns, answers = steps[-1]
    assert "<mark>Réponse.</mark>" in chat[-1]["content"] and box == ""
    assert turns == [{"role": "user", "content": "Première ?"}, {"role": "assistant", "content": "Réponse. [1]"}]
    list(respond("Et ensuite ?", chat, turns, "fr", "extractive", 5, "hybrid"))
    assert fake.histories[-1] == turns, "a follow-up question is asked with the conversation so far"
    assert answers == {"1": {"question": "Première ?", "answer": "Réponse. [1]", "backend": "extractive",
                             "language": "fr", "cited": []}}, "what a 👍/👎 on message 1 is about"


def test_feedback_on_an_answer_is_stored_for_the_editors(tmp_path):
    import gradio as gr

    from eval.feedback import FeedbackStore
    from ui.chat import make_feedback

    settings = Settings(feedback_file=tmp_path / "feedback.jsonl")
    handler = make_feedback(settings)
    about = {"1": {"question": "Qui a fondé Mistral AI ?", "answer": "Une phrase hors sujet. [1]",
                   "backend": "extractive", "language": "fr", "cited": ["a#1"]}}
    handler(about, "fr", gr.LikeData(None, {"index": 1, "value": "x", "liked": False}))
    handler(about, "fr", gr.LikeData(None, {"index": 1, "value": "x", "liked": "Wrong source"}))
    handler(about, "fr", gr.LikeData(None, {"index": 1, "value": "x", "liked": True}))
    handler(about, "fr", gr.LikeData(None, {"index": 3, "value": "x", "liked": False}))  # no such answer: ignored
    store = FeedbackStore(settings.feedback_file)
    assert [(f.rating, f.reason) for f in store.items()] == [("up", ""), ("down", "Wrong source"), ("down", "")]
    assert store.items("down")[0].question == "Qui a fondé Mistral AI ?" and store.items("down")[0].cited == ("a#1",)


def test_chat_shows_an_error_instead_of_a_stack_trace():
    def broken():
        raise IndexMissingError("no index in var/index; run `rag index corpus/`")
        yield  # pragma: no cover

    class Broken:
        def ask_stream(self, question, **options):
            return broken()

    chat, _, turns, _ = list(make_respond(lambda: Broken(), Settings())("Q ?", [], [], "en", "", 5, "dense"))[-1]
    assert "rag-answer error" in chat[-1]["content"] and "rag index corpus/" in chat[-1]["content"]
    assert turns == []


def test_chat_needs_a_key_when_reads_do():
    fake = RecordingPipeline([{"event": "done", "data": answer("Réponse. [1]", [])}])
    settings = Settings(read_requires_key=True, api_keys=["reader-key"])
    respond = make_respond(lambda: fake, settings)
    for key, expected in (("", "needs an API key"), ("wrong", "not valid")):
        chat, box, turns, _ = list(respond("Q ?", [], [], "en", "", 5, "dense", key))[-1]
        assert expected in chat[-1]["content"] and "Sign-in needed" in chat[-1]["content"]
        assert box == "Q ?" and turns == [] and fake.histories == [], "the pipeline is not asked"
    chat, _, turns, _ = list(respond("Q ?", [], [], "en", "", 5, "dense", "reader-key"))[-1]
    assert len(turns) == 2 and len(fake.histories) == 1
    assert list(make_respond(lambda: fake, Settings())("Q ?", [], [], "en", "", 5, "dense"))[-1][2], \
        "without RAG_READ_REQUIRES_KEY readers need no key"


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review")
    shutil.copy(REPO_EVAL_SET, folder / "items.jsonl")
    pipeline = fake_pipeline(folder / "index")
    return ReviewRoom(folder / "items.jsonl", lambda: pipeline)


def test_review_room_filters_by_tag_verdict_and_run(room):
    assert all("number" in row[3] for row in room.rows("en", tag="number")) and room.rows("en", tag="number")
    item = room.evalset.items()[0]
    room.evalset.record_verdict(item.id, "needs work", "trop long")
    assert [r[0] for r in room.rows("en", verdict="needs work")] == [item.id]
    assert item.id not in [r[0] for r in room.rows("en", verdict="none")]
    run = room.run([item])
    state = "pass" if run.results[0].ok else "fail"
    assert [r[0] for r in room.rows("en", run=state)] == [item.id]
    assert len(room.rows("en", run="not_run")) == len(room.evalset.items()) - 1
    assert room.summary == {}, "a one-item run does not replace the whole-set summary"
    html = metrics_html(room.result(item.id), "en")
    assert ("pass" if run.results[0].ok else "fail") in html and "recall" in html


def test_review_room_whole_run_keeps_a_summary(room):
    items = room.evalset.items()
    room.run(items)
    summary = room.summary
    assert summary["items"] == len(items) and 0 <= summary["pass_rate"] <= 1
    assert "pass_rate" in summary_html(summary, "fr") and "Résumé" in summary_html(summary, "fr")
    assert room.rows("en", run="not_run") == []


def test_examples_come_from_the_eval_set(tmp_path):
    questions = example_questions(REPO_EVAL_SET)
    items = {i.question: i for i in EvalSet(REPO_EVAL_SET).items()}
    assert questions and all(items[q].answerable for q in questions)
    assert {items[q].language for q in questions} == {"fr", "en"}
    assert example_questions(tmp_path / "missing.jsonl"), "an empty or missing set falls back to fixed examples"


@pytest.mark.parametrize(("settings", "key", "refusal"), [
    ({}, "anything", "has no editor key"),
    ({"editor_keys": "alice:k-alice"}, "", "needs an editor's key"),
    ({"editor_keys": "alice:k-alice"}, "k-bob", "not valid"),
    ({"api_keys": ["api-1"]}, "k-alice", "not valid"),
])
def test_review_room_writes_are_refused_without_a_valid_key(room, settings, key, refusal):
    handlers = Handlers(room, Settings(**settings))
    before = room.evalset.path.read_bytes()
    item = room.evalset.items()[1]
    results = [handlers.record("en", key, item.id, "correct", "ok", "", "", ""),
               handlers.save("en", key, item.id, "Changed?", "x", "y", "", "", ""),
               handlers.add("en", key, "New?", "x", "y", True, "fr", "", "", "", ""),
               handlers.run_item("en", key, item.id, "", "", "", ""),
               handlers.run_all("en", key, item.id, "", "", "", "")]
    for status, *_ in results:
        assert status.startswith("⚠ Sign-in needed") and refusal in status, status
    assert room.evalset.path.read_bytes() == before, "nothing is written"


def test_a_verdict_records_the_signed_in_editor(room):
    item = room.evalset.items()[2]
    status, history, *_ = Handlers(room, Settings(editor_keys="alice:k-alice, bob:k-bob")).record(
        "en", " k-bob ", item.id, "incorrect", "wrong year", "", "", "")
    assert status.startswith("✓") and "(bob)" in status and "bob" in history
    assert room.evalset.get(item.id).verdicts[-1]["by"] == "bob"
    status, *_ = Handlers(room, Settings(api_keys=["api-1"])).record("en", "api-1", item.id, "correct", "", "", "",
                                                                       "")
    assert room.evalset.get(item.id).verdicts[-1]["by"].startswith("api-") and "api-1" not in status


def test_editor_keys_must_be_name_and_key():
    with pytest.raises(ValueError, match="name:key"):
        Settings(editor_keys="alice")
    assert Settings(editor_keys="alice:a:b").editor_keys == [("alice", "a:b")]


def test_passages_are_grouped_by_article_without_heading_marks():
    text = "## Contexte\n\nMicrosoft a investi 13 milliards. Suite."
    start = text.index("Microsoft")
    done = answer("Microsoft a investi 13 milliards. [1] Autre. [2] Encore. [3]",
                  [citation(1, text, [(start, start + 33)]), citation(2, "Autre."), citation(3, "Encore.")])
    done["citations"][2]["article_id"] = "b"
    html_text = sources_html(done, "k", "fr")
    assert html_text.count('class="article-head"') == 2 and html_text.count('class="source"') == 3
    assert "##" not in html_text and "Contexte" in html_text
    assert "<mark>Microsoft a investi 13 milliards.</mark>" in html_text


def test_whole_runs_are_saved_survive_a_restart_and_compare(tmp_path, monkeypatch):
    import time

    stamp = time.gmtime()
    monkeypatch.setattr("ui.review_data.time.gmtime", lambda: stamp)  # both runs in the same second, always
    shutil.copy(REPO_EVAL_SET, tmp_path / "items.jsonl")
    pipeline = fake_pipeline(tmp_path / "index")
    room = ReviewRoom(tmp_path / "items.jsonl", lambda: pipeline, tmp_path / "runs")
    items = room.evalset.items()
    room.run(items, by="alice")
    first = room.runs()
    assert len(first) == 1 and first[0]["by"] == "alice" and first[0]["backend"] == "extractive"
    room.evalset.update(items[0].id, expected_answer="une réponse que rien ne donne")
    room.run(room.evalset.items())  # within the same second as the first: both are kept
    restarted = ReviewRoom(tmp_path / "items.jsonl", lambda: pipeline, tmp_path / "runs")
    assert [r["name"] for r in restarted.runs()] == [r["name"] for r in room.runs()] and len(restarted.runs()) == 2
    assert restarted.summary["items"] == len(items) and restarted.result(items[0].id) is not None
    newer, older = (r["name"] for r in restarted.runs())
    assert newer == older + "-2", "newest first"
    comparison = restarted.compare(newer, older)
    assert [c["item_id"] for c in comparison["items"]] == [items[0].id]
    assert items[0].id in changes_html(comparison, "en")
    with pytest.raises(NotFoundError):
        restarted.load_run("../../etc/passwd")


def test_coverage_lists_the_newest_titles_and_the_date_span():
    from types import SimpleNamespace

    from ui.render import coverage_html

    arts = [SimpleNamespace(title=f"Titre {i} <i>", date=f"2025-0{i}-01") for i in range(1, 9)]
    import html as _html

    shown = _html.unescape(coverage_html(arts, "en"))
    assert "8 article(s) to ask about" in shown and "2025-01-01 → 2025-08-01" in shown
    assert shown.index("Titre 8") < shown.index("Titre 7") and "Titre 2" not in shown and "and 2 more" in shown
    assert "<i>" not in coverage_html(arts, "en") and "No article" in coverage_html([], "en")


@pytest.mark.parametrize("text", ["Pourquoi s'est-il entretenu ?", "<b>&amp;</b> [x](javascript:1) # 10:00 «a»"])
def test_literal_text_round_trips_through_html(text):
    import html as _html

    from ui.render import literal

    shown = literal(text)
    assert _html.unescape(shown) == text and "<" not in shown and "[" not in shown and "(" not in shown


def test_the_search_keeps_items_holding_all_its_words_accents_and_case_ignored(room):
    hits = [room.evalset.get(r[0]) for r in room.rows("en", search="MISTRAL")]
    assert hits and all("mistral" in f"{i.question} {i.expected_answer} {i.evidence}".lower() for i in hits)
    assert len(room.rows("en", search="milliards microsoft")) < len(room.rows("en", search="microsoft"))
    assert room.rows("en", search="q011")[0][0] == "q011"
    assert room.rows("en", search="réponse") == room.rows("en", search="reponse")
    assert room.rows("en", search="zzz-nothing") == []


def test_a_verdict_on_every_item_shown_needs_a_narrowed_table(tmp_path):
    shutil.copy(REPO_EVAL_SET, tmp_path / "items.jsonl")
    pipeline = fake_pipeline(tmp_path / "index")
    room = ReviewRoom(tmp_path / "items.jsonl", lambda: pipeline)
    handlers = Handlers(room, Settings(editor_keys="alice:k-alice"))
    status, *_ = handlers.record_shown("en", "k-alice", "needs work", "", "", "", "", "")
    assert "Narrow the table first" in status
    assert not any(i.verdicts and i.verdicts[-1].get("comment") == "batch" for i in room.evalset.items())
    shown = [r[0] for r in room.rows("en", search="mistral")]
    status, comment, _ = handlers.record_shown("en", "k-alice", "needs work", "batch", "", "", "", "mistral")
    assert status.startswith("✓") and f"{len(shown)} items" in status and comment == ""
    marked = [i.id for i in room.evalset.items() if i.verdicts and i.verdicts[-1].get("comment") == "batch"]
    assert marked == shown and all(room.evalset.get(i).verdicts[-1]["by"] == "alice" for i in marked)


def test_metrics_show_their_pass_marks_why_the_item_failed_and_where_the_evidence_ranked(room):
    item = room.evalset.items()[0]
    room.evalset.update(item.id, expected_answer="une réponse que rien ne donne")
    room.run([room.evalset.get(item.id)])
    result = room.result(item.id)
    assert not result["ok"] and result["marks"]["recall"] == ">= 0.5" and result["marks"]["wrong_abstention"] == "= 0"
    shown = metrics_html(result, "en")
    assert "pass mark" in shown and "&gt;= 0.5" in shown
    assert "neither the expected words" in shown, result["why"]
    rank = round(1 / result["metrics"]["mrr"]) if result["metrics"]["mrr"] else None
    assert (f"passage {rank} of the" in shown) if rank else "in none of the" in shown
    room.evalset.update(item.id, expected_answer=item.expected_answer)


def test_a_source_shows_its_outlet_and_the_outlets_that_published_the_same_story():
    c = {**citation(1, "Le bilan s’élève à sept morts.", [(0, 30)], url="https://a.example/x"), "source": "APE <i>",
         "copies": [{"article_id": "b", "title": "T", "source": "Midi Matin", "date": "2024-10-18",
                     "url": "https://b.example/y"}, {"article_id": "c", "title": "T", "source": "", "date": "",
                                                      "url": "javascript:alert(1)"}]}
    html = sources_html(answer("Le bilan s’élève à sept morts. [1]", [c]), "a1", "fr")
    assert '<span class="outlet">APE &lt;i&gt;</span>' in html
    assert "Aussi publié par" in html and ">Midi Matin 2024-10-18</a>" in html
    assert "javascript:" not in html and ", c</div>" in html, "a copy without a web URL is named, not linked"
    assert "Also published by" in sources_html(answer("x [1]", [c]), "a1", "en")


def test_the_chat_filters_check_their_dates():
    from ui.chat import chat_filters

    assert chat_filters("", " ", []) is None
    f = chat_filters("2025-01-01", "2025-06-30", ["Le Monde"])
    assert (f.date_from, f.date_to, f.sources) == ("2025-01-01", "2025-06-30", ("Le Monde",))
    with pytest.raises(InputError, match="does not exist"):
        chat_filters("2025-02-30", "", [])
    with pytest.raises(InputError, match="after the end date"):
        chat_filters("2025-07-01", "2025-06-01", [])
