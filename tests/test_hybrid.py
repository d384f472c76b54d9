"""Hybrid retrieval: fusion against a brute-force oracle, component scores, modes in the pipeline,
abstention on the dense evidence, MMR and reranking."""
import numpy as np
import pytest

from common.errors import UnknownNameError
from index.build import passage_text, update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.lexical import LexicalIndex, analyze, document_text
from index.store import IndexStore
from index.types import Article
from rag.pipeline import Pipeline
from rag.retriever import Filters, Retrieval, RetrievalConfig, evidence, rerank
from rag.settings import Settings
from tests.test_lexical import bm25_oracle

TEXTS = [
    "Microsoft a investi treize milliards de dollars dans OpenAI depuis 2019.",
    "OpenAI et Microsoft renégocient leur partenariat sur le cloud Azure.",
    "La Banque de France relève sa prévision de croissance pour l'année.",
    "Le festival de Cannes ouvre ses portes avec un film d'animation.",
    "Les élections municipales approchent et les candidats se déclarent.",
    "Azure, le cloud de Microsoft, héberge les modèles d'OpenAI.",
    "La pluie perturbe le Tour de France cycliste dans les Alpes.",
    "Un accord sur le climat est signé par les pays européens.",
]
QUESTIONS = ["Combien Microsoft a-t-il investi dans OpenAI ?", "cloud Azure partenariat", "élections candidats",
             "Tour de France pluie", "quelle croissance pour la Banque de France ?", "climat accord européen"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    store = IndexStore(tmp_path_factory.mktemp("hybrid"))
    articles = [Article(id=f"a{i}", title="", text=t, language="fr") for i, t in enumerate(TEXTS)]
    data, _ = update_index(store, FakeEmbedder(16), Chunker(), articles)
    return data


def oracle(data, question, vector, fusion, weight, rrf_k, depth):
    """Fused ranking by brute force: every chunk scored on both sides, ranks from full sorts."""
    n = len(data.chunks)
    dense = data.vectors @ vector
    lexical = bm25_oracle([analyze(document_text(c), "fr") for c in data.chunks], analyze(question, "fr"))
    dense_order = sorted(range(n), key=lambda i: (-dense[i], i))[:depth]
    lexical_order = sorted((i for i in range(n) if lexical[i] > 0), key=lambda i: (-lexical[i], i))[:depth]
    pool = sorted(set(dense_order) | set(lexical_order))
    if fusion == "rrf":
        fused = {i: (weight / (rrf_k + dense_order.index(i) + 1) if i in dense_order else 0)
                 + ((1 - weight) / (rrf_k + lexical_order.index(i) + 1) if i in lexical_order else 0) for i in pool}
    else:
        d, lex = dense[pool], lexical[pool]
        scale = lambda x: (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else 0 * x  # noqa: E731
        fused = dict(zip(pool, weight * scale(d) + (1 - weight) * scale(lex)))
    return sorted(pool, key=lambda i: (-fused[i], i)), fused


@pytest.fixture(scope="module")
def random_index(index):
    """The same chunks with random unit vectors: no tied cosines, so the oracle's order is the only one."""
    from index.store import IndexData

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(len(index.chunks), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return IndexData(index.manifest, index.articles, index.chunks, vectors), rng


@pytest.mark.parametrize("fusion, weight, rrf_k, depth", [
    ("rrf", 0.5, 60, 50), ("rrf", 0.7, 5, 50), ("rrf", 0.5, 60, 3), ("weighted", 0.5, 60, 50),
    ("weighted", 0.3, 60, 50), ("weighted", 0.6, 60, 2)])
def test_fusion_matches_brute_force_oracle(random_index, fusion, weight, rrf_k, depth):
    index, rng = random_index
    config = RetrievalConfig(fusion=fusion, dense_weight=weight, rrf_k=rrf_k, candidates=depth)
    retrieval = Retrieval(index, FakeEmbedder(16), config, lexical=LexicalIndex.build(index.chunks))
    for question in QUESTIONS:
        vector = rng.normal(size=16).astype(np.float32)
        vector /= np.linalg.norm(vector)
        hits = retrieval.search(question, vector, 4, "hybrid")
        order, fused = oracle(index, question, vector, fusion, weight, rrf_k, max(4, depth))  # lists go >= k deep
        positions = {c.id: i for i, c in enumerate(index.chunks)}
        assert [positions[h.chunk.id] for h in hits] == order[:4], question
        for hit in hits:
            i = positions[hit.chunk.id]
            assert hit.score == pytest.approx(fused[i], abs=1e-6)
            assert hit.scores["dense"] == pytest.approx(float(index.vectors[i] @ vector), abs=1e-6)
            assert set(hit.scores) == {"dense", "lexical", "fused"}


def test_modes_and_evidence(index):
    emb = FakeEmbedder(16)
    retrieval = Retrieval(index, emb)
    question = "Combien Microsoft a-t-il investi dans OpenAI ?"
    vector = retrieval.embed(question)
    dense, lexical, hybrid = (retrieval.search(question, vector, 3, m) for m in ("dense", "lexical", "hybrid"))
    assert [h.score for h in dense] == sorted((h.score for h in dense), reverse=True)
    assert lexical[0].chunk.text == TEXTS[0] and lexical[0].scores["lexical"] == lexical[0].score
    assert all("dense" in h.scores for h in lexical), "lexical hits carry their dense cosine for abstention"
    assert evidence(hybrid) == max(h.scores["dense"] for h in hybrid)
    assert evidence([]) == float("-inf")
    only = retrieval.search(question, vector, 5, "hybrid", Filters(exclude_article_ids=("a0",)))
    assert only and all(h.chunk.article_id != "a0" for h in only)
    with pytest.raises(UnknownNameError, match="known: dense, hybrid, lexical"):
        retrieval.search(question, vector, 3, "sparse")


def test_pipeline_modes_and_abstention_on_dense_evidence(index):
    settings = Settings(embedding_model="fake:16", abstain_threshold=-1.0, backend="extractive")
    pipeline = Pipeline(settings, FakeEmbedder(16), index)
    question = "Microsoft a investi combien dans OpenAI depuis 2019 ?"
    answers = {m: pipeline.ask(question, mode=m, backend="extractive") for m in ("dense", "lexical", "hybrid")}
    assert all(not a.abstained for a in answers.values())
    assert answers["lexical"].citations[0].text == TEXTS[0]
    best = evidence(pipeline.search(question, 5, "hybrid"))
    above = Pipeline(settings.model_copy(update={"abstain_threshold": best + 1e-4}), FakeEmbedder(16), index)
    below = Pipeline(settings.model_copy(update={"abstain_threshold": best - 1e-4}), FakeEmbedder(16), index)
    assert above.ask(question, mode="hybrid").abstained and not below.ask(question, mode="hybrid").abstained
    events = list(pipeline.ask_stream(question, mode="lexical"))
    assert events[0]["event"] == "citations" and events[0]["data"][0]["text"] == TEXTS[0]


def test_mmr_drops_near_duplicates(tmp_path):
    texts = ["Microsoft investit dans OpenAI et son cloud Azure.",
             "Microsoft investit dans OpenAI et son cloud Azure !",
             "OpenAI signe avec Oracle pour du cloud supplémentaire."]
    articles = [Article(id=f"d{i}", title="", text=t, language="fr") for i, t in enumerate(texts)]
    emb = FakeEmbedder(16)
    question = "Microsoft investit dans OpenAI cloud"
    vector = emb.embed([question], kind="query")[0]
    data, _ = update_index(IndexStore(tmp_path / "copies"), emb, Chunker(), articles)
    assert data.article_by_id["d1"].story == "d0", "d1 is a copy of d0 (index/duplicates.py)..."
    kept = Retrieval(data, emb, RetrievalConfig(mode="dense")).search(question, vector, 2)
    assert [h.chunk.article_id for h in kept] == ["d0", "d2"], "... so it is kept once without MMR"
    data, _ = update_index(IndexStore(tmp_path), emb, Chunker(), articles, duplicate_threshold=1.1)  # no copies
    plain = Retrieval(data, emb, RetrievalConfig(mode="dense")).search(question, vector, 2)
    diverse = Retrieval(data, emb, RetrievalConfig(mode="dense", mmr_lambda=0.3)).search(question, vector, 2)
    assert {h.chunk.article_id for h in plain} == {"d0", "d1"}
    assert {h.chunk.article_id for h in diverse} == {plain[0].chunk.article_id, "d2"}


class ReverseLength:
    """A fake reranker: shorter passages first."""

    def score(self, question, passages):
        return -np.array([len(p) for p in passages], dtype=np.float32)


def test_rerank_reorders_and_keeps_components(index):
    emb = FakeEmbedder(16)
    retrieval = Retrieval(index, emb, RetrievalConfig(rerank_depth=8), reranker=ReverseLength())
    question = "Microsoft OpenAI cloud"
    hits = retrieval.search(question, retrieval.embed(question), 4)
    lengths = [len(passage_text(h.chunk)) for h in hits]
    assert lengths == sorted(lengths) and all({"dense", "lexical", "fused", "rerank"} <= set(h.scores) for h in hits)
    assert rerank(ReverseLength(), question, []) == []


@pytest.mark.slow
def test_cross_encoder_reranker_loads_offline(e5_model_dir):
    """Any CrossEncoder folder works (here the e5 encoder with an untrained head: only the wiring is tested)."""
    import torch

    from rag.retriever import CrossEncoderReranker

    torch.manual_seed(0)
    reranker = CrossEncoderReranker(str(e5_model_dir))
    scores = reranker.score("Microsoft OpenAI", ["Microsoft investit.", "Il pleut."])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    hits = rerank(reranker, "Microsoft OpenAI", [])
    assert hits == []


def test_lexical_index_is_reused_not_rebuilt_per_query(index, monkeypatch):
    retrieval = Retrieval(index, FakeEmbedder(16))
    first = retrieval.lexical
    monkeypatch.setattr(LexicalIndex, "build", lambda *a, **k: pytest.fail("rebuilt"))
    for question in QUESTIONS:
        retrieval.search(question, retrieval.embed(question), 3, "hybrid")
    assert retrieval.lexical is first
