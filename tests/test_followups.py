"""The follow-up set (eval/followups.jsonl) and `rag eval followups` over a fake-embedder index."""
from eval.followups import DEFAULT_CORPUS, DEFAULT_SET, WAYS, format_report, load, measure
from index.loaders import load_articles
from tests.fakes import fake_pipeline


def test_the_set_is_large_bilingual_and_its_evidence_is_in_the_articles():
    items = load(DEFAULT_SET)
    assert len(items) >= 20 and {i["language"] for i in items} == {"fr", "en"}
    text = "\n".join(a.text for a in load_articles(DEFAULT_CORPUS))
    assert [i["id"] for i in items if i["evidence"] not in text] == []


def test_measure_reports_each_way(tmp_path):
    pipeline = fake_pipeline(tmp_path / "index", load_articles(DEFAULT_CORPUS))
    report = measure(pipeline, load(DEFAULT_SET))
    assert set(report["ways"]) == set(WAYS) and report["conversations"] >= 20
    for result in report["ways"].values():
        assert 0 <= result["hits"]["@1"] <= result["hits"]["@3"] <= report["conversations"]
    assert "heuristic" in format_report(report)
