"""The bundled eval set, and reading, adding, editing and judging items safely."""
import json
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from common.errors import InputError, NotFoundError
from eval.dataset import DEFAULT_SET, EvalItem, EvalSet, load_items, squad_items
from index.loaders import load_articles

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def eval_set(tmp_path):
    path = tmp_path / "items.jsonl"
    shutil.copy(DEFAULT_SET, path)
    return EvalSet(path)


def _item(question="Qui ?", **fields):
    return EvalItem(**{"id": "", "question": question, "expected_answer": "Lui.", "evidence": "Lui.",
                       "answerable": True, "language": "fr", **fields})


# --- the bundled set ---------------------------------------------------------------------


def test_bundled_set_has_what_the_issue_asks():
    items = EvalSet().items()
    tags = Counter(t for i in items for t in i.tags)
    assert len(items) >= 40
    assert sum(not i.answerable for i in items) >= 10 and tags["unanswerable"] == sum(not i.answerable for i in items)
    assert sum(i.language == "en" for i in items) >= 6
    assert tags["faq"] >= 4 and tags["paraphrase"] >= 4 and tags["near-miss"] >= 8
    sections = {"intro", "contexte", "appel", "renegociation", "tensions", "impacts", "analyse", "avenir", "conclusion"}
    assert sections <= set(tags), f"sections without a question: {sections - set(tags)}"


def test_bundled_evidence_is_quoted_from_the_article_and_fits_a_chunk():
    from eval.metrics import find_span

    article = load_articles([ROOT / "corpus"])[0]
    for item in EvalSet().items():
        if item.answerable:
            assert item.evidence and find_span(article.text, item.evidence), f"{item.id}: evidence not in the article"
        else:
            assert not item.evidence and item.expected_answer in ("Les articles ne le disent pas.",
                                                                  "The articles don't say.")


def test_faq_answers_are_expected_word_for_word():
    """The four FAQ answers (whose questions the article lost) each have a reconstructed question."""
    text = (ROOT / "corpus" / "openai-microsoft-partenariat.md").read_text(encoding="utf-8")
    faq = [p.strip() for p in text.split("## FAQ", 1)[1].split("\n\n") if p.strip()]
    expected = {i.expected_answer for i in EvalSet().items() if "faq" in i.tags and i.language == "fr"}
    assert len(faq) == 4 and set(faq) == expected


# --- editing -----------------------------------------------------------------------------


def test_add_get_update_and_verdict(eval_set):
    added = eval_set.add(_item(tags=["test", " x ", "test"]))
    assert added.id == "q060" and added.tags == ("test", "x")
    assert eval_set.get("q060") == added
    changed = eval_set.update("q060", question="  Qui donc ? ", tags="a, b", answerable=False, expected_answer="")
    assert changed.question == "Qui donc ?" and changed.tags == ("a", "b") and not changed.answerable
    judged = eval_set.record_verdict("q060", "needs work", "trop vague")
    assert judged.verdicts[-1]["verdict"] == "needs work" and judged.verdicts[-1]["comment"] == "trop vague"
    assert judged.verdicts[-1]["at"].endswith("Z") and len(judged.verdicts[-1]["at"]) == 20
    assert EvalSet(eval_set.path).get("q060") == judged, "saved to the file"
    assert len(eval_set.items()) == len(EvalSet().items()) + 1
    assert not list(eval_set.path.parent.glob(".items.jsonl.*")), "no temporary file left behind"


@pytest.mark.parametrize("call, message", [
    (lambda s: s.add(_item(id="q001")), "already used"),
    (lambda s: s.add(_item(question=" ")), "question is empty"),
    (lambda s: s.add(_item(language="french")), "two-letter code"),
    (lambda s: s.add(_item(id="bad id!")), "invalid id"),
    (lambda s: s.add(_item(expected_answer="")), "needs an expected answer"),
    (lambda s: s.update("q001", answerable="yes"), "true or false"),
    (lambda s: s.update("q001", verdicts=[]), "editable fields: question"),
    (lambda s: s.update("q001", tags=3), "tags must be"),
    (lambda s: s.record_verdict("q001", "great"), "correct, incorrect, needs work"),
])
def test_bad_values_say_what_is_allowed(eval_set, call, message):
    before = eval_set.path.read_bytes()
    with pytest.raises(InputError, match=message):
        call(eval_set)
    assert eval_set.path.read_bytes() == before


def test_unknown_items(eval_set):
    with pytest.raises(NotFoundError, match="no eval item 'nope'"):
        eval_set.get("nope")
    with pytest.raises(NotFoundError):
        eval_set.record_verdict("nope", "correct")


def test_bad_lines_are_reported_with_their_place(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "question": "Q ?", "expected_answer": "R"}\n{oops\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"s.jsonl:2: not valid JSON"):
        EvalSet(path).items()
    path.write_text('{"id": "a", "question": "Q ?", "expected_answer": "R", "colour": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match="unknown field"):
        EvalSet(path).items()


def test_concurrent_edits_from_threads_are_all_kept(eval_set):
    def judge(n):
        eval_set.record_verdict("q001", "correct", f"thread {n}")

    threads = [threading.Thread(target=judge, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    comments = {v["comment"] for v in eval_set.get("q001").verdicts}
    assert comments == {f"thread {n}" for n in range(8)}


def test_concurrent_edits_from_two_processes_are_all_kept(eval_set):
    code = ("import sys; from eval.dataset import EvalSet, EvalItem; s = EvalSet(sys.argv[1])\n"
            "for n in range(15):\n"
            "    s.add(EvalItem('', f'{sys.argv[2]} {n} ?', 'R', '', True, 'fr'))\n"
            "    s.record_verdict('q002', 'incorrect', f'{sys.argv[2]} {n}')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(eval_set.path), name], cwd=ROOT)
             for name in ("alice", "bob")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    items = eval_set.items()
    added = [i.question for i in items if i.question.startswith(("alice", "bob"))]
    assert len(added) == 30 and len({i.id for i in items}) == len(items)
    assert len(eval_set.get("q002").verdicts) == 30


# --- SQuAD files -------------------------------------------------------------------------


def test_squad_questions_become_answerable_items(tmp_path):
    context = "Paris est la capitale. La tour Eiffel mesure 330 mètres. Elle date de 1889."
    path = tmp_path / "mini.json"
    path.write_text(json.dumps({"version": "1", "data": [{"title": "Paris", "paragraphs": [{"context": context, "qas": [
        {"id": "a1", "question": "Combien mesure la tour ?", "answers": [{"text": "330 mètres",
                                                                            "answer_start": context.index("330")}]},
        {"id": "a2", "question": "Quand ?", "answers": [], "is_impossible": True}]}]}]}), encoding="utf-8")
    first, second = squad_items(path)
    assert first.id == "a1" and first.expected_answer == "330 mètres" and first.answerable
    assert first.evidence == "La tour Eiffel mesure 330 mètres." and first.language == "fr"
    assert first.tags == ("squad", "Paris") and not second.answerable
    assert load_items(path) == [first, second]
    with pytest.raises(InputError, match="no such eval set"):
        load_items(tmp_path / "missing.jsonl")



def test_eval_data_layer_import_is_light():
    """The review room imports the data layer and the runner; neither loads torch or the index."""
    code = ("import sys, eval.dataset, eval.runner, eval.report, eval.gate; "
            "print(','.join(m for m in ('torch', 'faiss', 'sentence_transformers', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def _two_items(tmp_path):
    from eval.dataset import EvalItem, EvalSet

    evalset = EvalSet(tmp_path / "items.jsonl")
    evalset.add(EvalItem("", "Qui dirige OpenAI ?", "Sam Altman", "Sam Altman dirige OpenAI.", True, "fr", ("faq",)))
    evalset.add(EvalItem("", "Combien vaut Mistral ?", "", "", False, "fr", ("unanswerable", "money")))
    evalset.record_verdict("q001", "correct", "ok, «guillemets», commas", by="alice")
    evalset.update("q002", by="bob", tags=("unanswerable", "money", "mistral"))
    return evalset


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_imported_into_an_empty_set_gives_the_same_items(tmp_path, fmt):
    from eval.dataset import EvalSet, items_to_csv, items_to_jsonl, parse_items

    source = _two_items(tmp_path)
    text = (items_to_csv if fmt == "csv" else items_to_jsonl)(source.items())
    target = EvalSet(tmp_path / "copy" / "items.jsonl")
    assert target.import_items(parse_items(text, f"export.{fmt}")) == {"added": ["q001", "q002"], "updated": []}
    assert target.items() == source.items()


def test_an_import_updates_known_ids_keeps_their_verdicts_and_numbers_new_items(tmp_path):
    evalset = _two_items(tmp_path)
    result = evalset.import_items([
        {"id": "q001", "question": "Qui dirige OpenAI aujourd'hui ?", "expected_answer": "Sam Altman",
         "verdicts": [{"verdict": "incorrect", "comment": "", "at": "2026-12-01T10:00:00Z", "by": "bob"}]},
        {"question": "Où est le siège d'OpenAI ?", "answerable": False}])
    assert result == {"added": ["q003"], "updated": ["q001"]}
    item = evalset.get("q001")
    assert item.question.endswith("aujourd'hui ?") and [v["by"] for v in item.verdicts] == ["alice", "bob"]


def test_a_bad_import_writes_nothing(tmp_path):
    from common.errors import InputError

    evalset = _two_items(tmp_path)
    before = evalset.path.read_bytes()
    with pytest.raises(InputError, match="item 2.*no question"):
        evalset.import_items([{"id": "q009", "question": "Ok ?", "answerable": False}, {"id": "q010"}])
    with pytest.raises(InputError, match="same id appears twice"):
        evalset.import_items([{"id": "x", "question": "a", "answerable": False},
                              {"id": "x", "question": "b", "answerable": False}])
    assert evalset.path.read_bytes() == before


def test_delete_removes_one_item_and_says_when_there_is_none(tmp_path):
    from common.errors import NotFoundError

    evalset = _two_items(tmp_path)
    assert evalset.delete("q002").question.startswith("Combien")
    assert [i.id for i in evalset.items()] == ["q001"]
    with pytest.raises(NotFoundError, match="no eval item 'q002'"):
        evalset.delete("q002")


def test_the_cli_exports_imports_and_deletes(tmp_path):
    import subprocess
    import sys

    evalset = _two_items(tmp_path)
    rag = [sys.executable, "-m", "newsrag.cli", "eval", "items"]
    out = tmp_path / "items.csv"
    subprocess.run([*rag, "export", "--format", "csv", "--out", str(out), "--eval-set", str(evalset.path)], check=True)
    subprocess.run([*rag, "delete", "q001", "q002", "--eval-set", str(evalset.path)], check=True)
    assert evalset.items() == []
    done = subprocess.run([*rag, "import", str(out), "--eval-set", str(evalset.path)], check=True,
                          capture_output=True, text=True)
    assert "2 added, 0 updated" in done.stdout and len(evalset.items()) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("id,question,answerable\nz1,Hello?,maybe\n", encoding="utf-8")
    failed = subprocess.run([*rag, "import", str(bad), "--eval-set", str(evalset.path)], capture_output=True, text=True)
    assert failed.returncode != 0 and "bad.csv:2: answerable is 'maybe'; write true or false" in failed.stderr


def test_an_edit_is_recorded_with_what_changed_when_and_by_whom(tmp_path):
    evalset = _two_items(tmp_path)
    evalset.update("q001", by="carol", question="Qui dirige OpenAI en 2026 ?", expected_answer="Sam Altman")
    edit = evalset.get("q001").edits[-1]
    assert edit["by"] == "carol" and edit["at"].endswith("Z")
    assert edit["changed"] == {"question": ["Qui dirige OpenAI ?", "Qui dirige OpenAI en 2026 ?"]}, \
        "an unchanged field is not listed"
    assert evalset.get("q002").edits[0]["changed"]["tags"] == [["unanswerable", "money"],
                                                               ["unanswerable", "money", "mistral"]]
    evalset.update("q001", question="Qui dirige OpenAI en 2026 ?")
    assert len(evalset.get("q001").edits) == 1, "a save that changes nothing adds no edit"
