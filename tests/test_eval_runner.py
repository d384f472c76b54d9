"""The runner, the report, the baseline comparison, the gate and ``rag eval answers``."""
import json
import re
from pathlib import Path

import pytest

from common.errors import ConfigError
from eval.dataset import EvalSet
from eval.gate import EvalConfig, compare_runs, load_config
from eval.judge import LLMJudge, judge_from_settings, parse_score
from eval.report import render_html
from eval.runner import METRICS, run_eval
from newsrag.cli import main
from rag.settings import Settings, get_settings
from tests import fakes
from tests.openai_stub import OpenAIStub, Reply

ROOT = Path(__file__).resolve().parent.parent
MINI = ("q011", "q020", "q024", "q045", "q057")  # numbers, a newspaper, a procedure, two unanswerable


@pytest.fixture(scope="module")
def fake_pipeline(tmp_path_factory):
    return fakes.fake_pipeline(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def mini_items():
    items = {i.id: i for i in EvalSet().items()}
    return [items[i] for i in MINI]


@pytest.fixture()
def cli_env(tmp_path, monkeypatch):
    """``rag`` on the fake embedder, its index in a temporary folder; yields a mini eval set file."""
    for name, value in {"RAG_EMBEDDING_MODEL": "fake:64", "RAG_ABSTAIN_THRESHOLD": "0.1",
                        "RAG_INDEX_DIR": str(tmp_path / "index")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    lines = [line for line in (ROOT / "eval" / "items.jsonl").read_text(encoding="utf-8").splitlines()
             if json.loads(line)["id"] in MINI]
    (tmp_path / "mini.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    yield tmp_path
    get_settings.cache_clear()


def test_run_eval_scores_every_item(fake_pipeline, mini_items):
    run = run_eval(fake_pipeline, mini_items)
    data = json.loads(json.dumps(run.to_dict()))
    assert [r["item_id"] for r in data["results"]] == list(MINI)
    for result in data["results"]:
        assert set(result["metrics"]) == set(METRICS) and result["metrics"]["judge"] is None
        assert result["answer"]["question"] == result["item"]["question"] and result["answer"]["citations"]
    answerable = [r for r in run.results if r.item["answerable"]]
    assert all(r.metrics["hit_at_k"] in (0.0, 1.0) and r.metrics["abstention"] is None for r in answerable)
    assert run.summary["items"] == 5 and run.summary["answerable"] == 3
    assert run.meta["backend"] == "extractive" and run.meta["embedder"] == "fake:64"


def test_one_item_at_a_time_gives_the_same_result(fake_pipeline, mini_items):
    """The review room runs single items; the pipeline is deterministic, so results agree."""
    whole = run_eval(fake_pipeline, mini_items)
    single = run_eval(fake_pipeline, mini_items[1:2])
    assert single.results[0].metrics == whole.results[1].metrics


def test_report_is_self_contained_and_marks_the_evidence(fake_pipeline, mini_items):
    run = run_eval(fake_pipeline, mini_items).to_dict()
    page = render_html(run, [{"metric": "f1", "value": 0.5, "bound": ">= 0.9", "ok": False}])
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=['\"]https?:", page), "nothing loaded from elsewhere"
    assert all(f"id='item-{i}'" in page for i in MINI)
    assert "<span class='evidence'>Selon le Wall Street Journal, OpenAI et Microsoft seraient" in page \
        or "evidence used'>Selon le Wall Street Journal" in page
    assert "<script>" in page and "Selon le Wall <script>" not in page


def test_compare_runs_finds_better_and_worse_items():
    def run(ok_a, f1_b):
        return {"summary": {"f1": f1_b},
                "results": [{"item_id": "a", "item": {"question": "A ?"}, "ok": ok_a, "metrics": {"f1": 0.5}},
                            {"item_id": "b", "item": {"question": "B ?"}, "ok": True, "metrics": {"f1": f1_b}}]}

    change = compare_runs(run(True, 0.2), run(False, 0.6))
    assert change["better"] == 1 and change["worse"] == 1
    assert {c["item_id"]: c["verdict"] for c in change["items"]} == {"a": "better", "b": "worse"}
    assert change["summary"] == {"f1": -0.4}
    assert compare_runs(run(True, 0.2), run(True, 0.2))["items"] == []


def test_thresholds_file_is_checked(tmp_path):
    config = load_config()
    assert config.gate_for("items")["min"] and config.gate_for("nope") == {}
    bad = tmp_path / "t.toml"
    bad.write_text("[per_item]\nfone = 0.3\n")
    with pytest.raises(ConfigError, match="fone"):
        load_config(bad)
    bad.write_text("[gate.items]\nminimum = {f1 = 0.3}\n")
    with pytest.raises(ConfigError, match="only hold min and max"):
        load_config(bad)


def _thresholds(path: Path, **minimums) -> Path:
    lines = ["[gate.mini.min]", *(f"{m} = {v}" for m, v in minimums.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_gate_fails_when_a_threshold_is_raised_above_the_achieved_value(cli_env, capsys):
    args = ["eval", "answers", "--set", str(cli_env / "mini.jsonl"), "--out", str(cli_env / "out")]
    assert main([*args, "--thresholds", str(_thresholds(cli_env / "none.toml"))]) == 0
    result = json.loads((cli_env / "out" / "answers-mini.json").read_text(encoding="utf-8"))
    achieved = result["summary"]
    assert (cli_env / "out" / "answers-mini.html").stat().st_size > 1000
    at = _thresholds(cli_env / "at.toml", pass_rate=achieved["pass_rate"], recall=achieved["recall"])
    assert main([*args, "--thresholds", str(at)]) == 0
    assert "quality gate passed" in capsys.readouterr().err
    above = _thresholds(cli_env / "above.toml", pass_rate=achieved["pass_rate"], recall=achieved["recall"] + 0.01)
    assert main([*args, "--thresholds", str(above)]) == 1
    err = capsys.readouterr().err
    assert f"recall = {achieved['recall']:.4g} is below the minimum" in err and "quality gate FAILED" in err
    assert main([*args, "--thresholds", str(above), "--no-gate"]) == 0


def test_cli_prints_the_table_and_compares_with_a_baseline(cli_env, capsys):
    out = cli_env / "out"
    args = ["eval", "answers", "--set", str(cli_env / "mini.jsonl"), "--out", str(out),
            "--corpus", str(ROOT / "corpus"), "--thresholds", str(_thresholds(cli_env / "none.toml"))]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert re.search(r"^hit_at_k\s+\d\.\d{4}", table, re.M) and re.search(r"^items\s+5$", table, re.M)
    baseline = json.loads((out / "answers-mini.json").read_text(encoding="utf-8"))
    flipped = next(r for r in baseline["results"] if r["item"]["answerable"])
    flipped["ok"] = not flipped["ok"]
    (cli_env / "base.json").write_text(json.dumps(baseline), encoding="utf-8")
    assert main([*args, "--baseline", str(cli_env / "base.json")]) == 0
    table = capsys.readouterr().out
    verdict = "better" if not flipped["ok"] else "worse"
    assert "vs baseline: " in table and re.search(rf"{verdict}\s+{flipped['item_id']}:", table)
    assert json.loads((out / "answers-mini.json").read_text())["comparison"][verdict] == 1


def test_cli_runs_a_squad_file_ungated(cli_env, capsys):
    context = "Le Louvre est un musée de Paris. Il a ouvert ses portes en 1793."
    squad = {"data": [{"title": "Louvre", "paragraphs": [{"context": context, "qas": [
        {"id": "s1", "question": "Quand le Louvre a-t-il ouvert ?",
         "answers": [{"text": "1793", "answer_start": 59}]}]}]},
        {"title": "Autre", "paragraphs": [{"context": "Texte sans rapport.", "qas": []}]}]}
    path = cli_env / "tiny.json"
    path.write_text(json.dumps(squad), encoding="utf-8")
    assert main(["eval", "answers", "--set", str(path), "--limit", "1", "--out", str(cli_env / "out")]) == 0
    result = json.loads((cli_env / "out" / "answers-tiny.json").read_text(encoding="utf-8"))
    assert [r["item_id"] for r in result["results"]] == ["s1"] and result["meta"]["gated"] is False
    assert result["results"][0]["metrics"]["hit_at_k"] == 1.0
    assert "not gated" in capsys.readouterr().err


def test_llm_judge_averages_repeats_over_a_real_http_server(mini_items):
    assert parse_score('{"score": 7}') == 7 and parse_score("9") == 9 and parse_score("{\"score\": 12}") is None
    with OpenAIStub() as server:
        settings = Settings(embedding_model="fake:64", openai_base_url=server.url, llm_retries=0)
        judge = judge_from_settings(settings, repeats=3)
        server.push(Reply('{"score": 8}'), Reply("no idea"), Reply('{"score": 6}'))
        assert judge(mini_items[0], {"answer": "13 milliards de dollars [1]"}) == 0.7
        assert "Expected answer: Environ 13 milliards" in server.requests[0]["messages"][0]["content"]
        assert server.requests[0]["temperature"] == 0.7
        server.push(*[Reply(status=500)] * 3)
        assert judge(mini_items[3], {"answer": "Les articles ne le disent pas."}) is None and judge.failures == 3
        assert "do not answer this question" in server.requests[-1]["messages"][0]["content"]


def test_judge_metric_counts_when_given(fake_pipeline, mini_items):
    class Always:
        def complete(self, messages, max_tokens):
            return type("C", (), {"text": '{"score": 10}'})()

    run = run_eval(fake_pipeline, mini_items[:2], judge=LLMJudge(Always(), repeats=2), config=EvalConfig())
    assert run.summary["judge"] == 1.0 and all(r.passed["judge"] for r in run.results)


@pytest.mark.slow
def test_real_pipeline_on_three_items(corpus_pipeline):
    """The default model on the bundled article: clear questions are answered from the right sentence (the
    reader's span is part of the item's evidence, cited)."""
    from common.citations import strip_marks
    from eval.metrics import find_span

    items = {i.id: i for i in EvalSet().items()}
    run = run_eval(corpus_pipeline, [items["q020"], items["q025"], items["q031"]])
    for result in run.results:
        m = result.metrics
        span = strip_marks(result.answer["answer"]).split(":", 1)[-1].strip(" .")
        assert m["hit_at_k"] == 1.0 and m["groundedness"] == 1.0 and m["recall"] >= 0.3, result.item_id
        assert find_span(items[result.item_id].evidence, span), (result.item_id, span)
        assert m["citation_precision"] > 0 and m["similarity"] > 0.85 and result.ok, result.item_id
