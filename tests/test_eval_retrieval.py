"""`rag eval retrieval` and `rag eval calibrate` on tiny SQuAD and BEIR sets made here."""
import json
import math

import numpy as np
import pytest

from eval.calibrate import auc, best_threshold, calibrate, threshold_for_answer_rate
from eval.retrieval import EvalQuery, Gold, load_eval_set, query_metrics, run
from index.types import Chunk
from newsrag.cli import main
from rag.settings import Settings, get_settings

PARAGRAPHS = {
    "Transports urbains": [
        ("Le tramway de Bordeaux fut inauguré en 2003 après des années de travaux sur la rive gauche.",
         [("En quelle année le tramway de Bordeaux a-t-il été inauguré ?", "2003")]),
        ("La ligne de métro automatique de Rennes transporte chaque jour près de cent mille voyageurs.",
         [("Combien de voyageurs prennent le métro de Rennes chaque jour ?", "cent mille")]),
    ],
    "Gastronomie": [
        ("Le cassoulet, plat du Languedoc, associe haricots blancs, confit de canard et saucisse de Toulouse.",
         [("Quels ingrédients composent le cassoulet ?", "haricots blancs, confit de canard et saucisse de Toulouse")]),
        ("  La fondue savoyarde se prépare avec du beaufort, du comté et un vin blanc sec.",
         [("Avec quel vin prépare-t-on la fondue savoyarde ?", "vin blanc sec"),
          ("Cette question n'a pas de réponse retrouvable", "introuvable")]),
    ],
}


@pytest.fixture
def squad(tmp_path):
    data = {"version": "test", "data": []}
    for title, paragraphs in PARAGRAPHS.items():
        entry = {"title": title, "paragraphs": []}
        for n, (context, qas) in enumerate(paragraphs):
            entry["paragraphs"].append({"context": context, "qas": [
                {"id": f"{title[:3]}{n}{i}", "question": q,
                 "answers": [{"text": a, "answer_start": max(context.find(a), 0)}]}
                for i, (q, a) in enumerate(qas)]})
        data["data"].append(entry)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def chunk(article, start, end):
    return Chunk(id=f"{article}#{start}", article_id=article, title="", text="x" * (end - start), start=start, end=end)


def test_metrics_follow_beir_definitions():
    query = EvalQuery("q", "?", (Gold("g", "a", 100, 200, (150, 160)),))
    ranked = [chunk("b", 0, 300), chunk("a", 0, 120), chunk("a", 140, 400), chunk("a", 150, 160)]
    m = query_metrics(ranked, query)  # rank 2 overlaps the paragraph but misses the answer: not the passage
    assert m == {"recall@1": 0.0, "recall@5": 1.0, "recall@10": 1.0, "mrr@10": pytest.approx(1 / 3),
                 "ndcg@10": pytest.approx(1 / math.log2(4)), "article_hit@5": 1.0}
    two = EvalQuery("q", "?", (Gold("d1", "d1"), Gold("d2", "d2")))
    m = query_metrics([chunk("d2", 0, 5), chunk("d2", 5, 9), chunk("x", 0, 1), chunk("d1", 0, 5)], two)
    assert m["recall@1"] == 0.5 and m["mrr@10"] == 1.0, "a passage counts once, at its first chunk"
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert query_metrics([], two)["ndcg@10"] == 0.0


def test_squad_gold_spans_point_at_the_answers(squad):
    found = load_eval_set(squad)
    assert len(found.articles) == 2 and len(found.queries) == 4 and found.skipped == 1
    texts = {a.id: a.text for a in found.articles}
    for query in found.queries:
        gold = query.gold[0]
        paragraph = texts[gold.article_id][gold.start:gold.end]
        assert paragraph.strip() == paragraph and paragraph in {c.strip() for ps in PARAGRAPHS.values() for c, _ in ps}
        answer = texts[gold.article_id][gold.answer[0]:gold.answer[1]]
        assert answer in paragraph and answer in {a for ps in PARAGRAPHS.values() for _, qas in ps for _, a in qas}


def test_run_reports_every_mode(squad, tmp_path):
    settings = Settings(embedding_model="fake:64", index_dir=tmp_path / "unused")
    report = run(squad, settings, index_dir=tmp_path / "eval-index")
    assert report["questions"] == 4 and set(report["modes"]) == {"dense", "lexical", "hybrid"}
    assert report["modes"]["lexical"]["recall@1"] == 1.0, "each question shares words with its paragraph only"
    for row in report["modes"].values():
        assert 0 <= row["ndcg@10"] <= 1 and row["queries_per_s"] > 0 and row["article_hit@5"] == 1.0
    again = run(squad, settings, modes=["lexical"], index_dir=tmp_path / "eval-index")
    assert again["chunks_embedded"] == 0, "a kept eval index is reused"


def test_cli_eval_retrieval_on_beir_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": "doc/1", "title": "Vélo", "text": "Le vélo électrique gagne du terrain dans les villes."},
            {"_id": "doc/2", "title": "Pluie", "text": "Il pleut sur la Bretagne tout le week-end."}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "vélos électriques en ville"}))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tdoc/1\t1\n")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "fake:64")
    get_settings.cache_clear()
    try:
        assert main(["eval", "retrieval", "--beir", str(folder), "--mode", "lexical", "--json"]) == 0
    finally:
        get_settings.cache_clear()
    report = json.loads(capsys.readouterr().out)
    assert report["modes"]["lexical"]["recall@1"] == 1.0 and report["questions"] == 1


def test_best_threshold_and_auc():
    answerable, unanswerable = np.array([0.9, 0.85, 0.8, 0.7]), np.array([0.75, 0.6, 0.65, 0.5])
    result = best_threshold(answerable, unanswerable)
    assert (result["threshold"] == pytest.approx(0.675)
            and result["balanced_accuracy"] == pytest.approx(0.875))  # tie: lowest
    assert auc(answerable, unanswerable) == pytest.approx(15 / 16)
    strict = threshold_for_answer_rate(answerable, unanswerable, 0.75)
    assert (strict["threshold"] == 0.8 and strict["answered_answerable"] == 0.75
            and strict["abstained_unanswerable"] == 1.0)
    assert threshold_for_answer_rate(answerable, unanswerable, 1.0)["threshold"] == 0.7
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5


@pytest.mark.slow
def test_calibrate_separates_answerable_from_removed_article(squad, embedder):
    result = calibrate(squad, Settings(), mode="hybrid", embedder=embedder)
    assert result["questions"] == 4 and result["auc"] >= 0.75
    assert result["answered_answerable"] >= 0.95 and result["criterion"] == "answers >= 95% of answerable"
    assert result["evidence_answerable_median"] > result["evidence_unanswerable_median"]
