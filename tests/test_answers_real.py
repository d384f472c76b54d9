"""End to end with the real model on the bundled article: the figure is found and cited, off-topic abstains."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def cited_texts(answer):
    by_n = {c.n: c for c in answer.citations}
    return [by_n[int(n)].text for n in re.findall(r"\[(\d+)\]", answer.answer)]


@pytest.mark.parametrize("question", ["Combien Microsoft a-t-il investi dans OpenAI ?",
                                      "How much money has Microsoft put into OpenAI?"])
def test_the_13_billion_figure_is_answered_and_cited(corpus_pipeline, question):
    answer = corpus_pipeline.ask(question)
    assert not answer.abstained
    assert "13 milliards" in answer.answer
    assert any("13 milliards de dollars" in text for text in cited_texts(answer))


@pytest.mark.parametrize("question", ["Quelle est la recette de la ratatouille ?",
                                      "Who won the football world cup in 2018?"])
def test_off_topic_questions_abstain(corpus_pipeline, question):
    answer = corpus_pipeline.ask(question)
    assert answer.abstained, answer.answer
    assert answer.answer in ("Les articles ne le disent pas.", "The articles don't say.")
    assert answer.citations, "related passages are still offered"


def test_cli_index_then_ask(tmp_path, e5_model_dir):
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "idx"), "RAG_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    os.symlink(e5_model_dir.parent, tmp_path / "cache" / "models")  # reuse the session's converted model
    rag = [sys.executable, "-m", "newsrag.cli"]
    out = subprocess.run([*rag, "index", str(ROOT / "corpus")], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1 added" in out.stdout
    out = subprocess.run([*rag, "ask", "--json", "Combien Microsoft a-t-il investi dans OpenAI ?"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert "13 milliards" in answer["answer"] and not answer["abstained"]
    out = subprocess.run([*rag, "index", "--delete", "nope"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "unknown article" in out.stderr and "Traceback" not in out.stderr
