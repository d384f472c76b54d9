"""Incremental writes: segments, tombstones, merged small segments and compaction (index/build.py).

The threshold from which writes are incremental (INCREMENTAL_MIN, 20,000 chunks in service) is lowered
so that a few hundred articles exercise every path; vectors come from the hash embedder."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

import index.build as build
import index.lexical as lexical_module
from index.build import compact, compaction_due, update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.lexical import LexicalIndex, load_lexical
from index.store import IndexStore
from index.types import Article

WORDS = ("banque taux inflation football Lyon championnat télescope galaxie climat accord élection candidat "
         "métro Rome billet réacteur fusion record température vaccin hôpital grève train budget impôt").split()


def article(i: int, version: int = 0) -> Article:
    rng = random.Random(i * 1000 + version)
    text = " ".join(f"{' '.join(rng.choices(WORDS, k=9))} numéro{i} v{version}." for _ in range(3))
    return Article(id=f"a{i}", title=f"Dépêche {i}", text=text, language="fr")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "INCREMENTAL_MIN", 50)
    return IndexStore(tmp_path / "idx"), FakeEmbedder(32), Chunker(target_tokens=64, overlap_tokens=8)


def queries(n: int = 40) -> list[str]:
    rng = random.Random(5)
    return [" ".join(rng.choices(WORDS, k=4)) for _ in range(n)]


def top(data, embedder, question: str, k: int = 10) -> list[str]:
    vector = embedder.embed([question], kind="query")[0]
    return [data.chunks[i].id for i, _ in data.search(vector, k)]


def test_a_write_on_a_large_index_adds_a_segment_and_tombstones_what_it_replaces(env):
    store, emb, chunker = env
    data, report = update_index(store, emb, chunker, [article(i) for i in range(60)])
    assert not report.incremental and len(data.segments) == 1 and len(data.chunks) >= 50
    main = data.segments[0].path
    data, report = update_index(store, emb, chunker, [article(60), article(3, version=1)])
    assert report.incremental and report.added == ["a60"] and report.replaced == ["a3"]
    assert len(data.segments) == 2 and data.segments[0].path == main, "the main segment is not rewritten"
    assert data.dead[data.segments[0].name] == {"a3"}
    data, report = update_index(store, emb, chunker, delete=["a5"])
    assert report.incremental and len(data.segments) == 2 and data.dead[data.segments[0].name] == {"a3", "a5"}
    loaded = store.load()
    assert sorted(a.id for a in loaded.articles) == sorted(f"a{i}" for i in range(61) if i != 5)
    assert [c.text for c in loaded.chunks if c.article_id == "a3"] == [c.text for c in chunker.chunk(article(3, 1))]
    assert loaded.manifest["counts"] == {"articles": 60, "chunks": len(loaded.chunks)}
    assert len(loaded.vectors) == len(loaded.chunks) and loaded.tombstones == 2 * len(chunker.chunk(article(5)))


def test_deleted_and_replaced_chunks_are_never_returned(env):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(i) for i in range(60)])
    gone = [f"a{i}" for i in range(0, 60, 3)]
    update_index(store, emb, chunker, [article(1, version=2)], delete=gone)
    data = store.load()
    lexical = load_lexical(data)
    old_a1 = {c.id for c in chunker.chunk(article(1))} - {c.id for c in chunker.chunk(article(1, 2))}
    for question in queries():
        vector = emb.embed([question], kind="query")[0]
        dense = [data.chunks[i] for i, _ in data.search(vector, len(data.chunks))]
        lexical_hits = [data.chunks[i] for i, _ in lexical.search(question, len(data.chunks))]
        for hits in (dense, lexical_hits):
            assert not {c.article_id for c in hits} & set(gone) and not {c.id for c in hits} & old_a1
        assert len(dense) == len(data.chunks), "every live chunk is still reachable"


def _stream(store, emb, chunker, base: int, writes: int, adds: int, deletes: int) -> set[int]:
    """``base`` articles, then ``writes`` incremental writes of ``adds`` new and ``deletes`` deleted articles."""
    update_index(store, emb, chunker, [article(i) for i in range(base)])
    rng, live = random.Random(3), set(range(base))
    for step in range(writes):
        new = range(base + adds * step, base + adds * (step + 1))
        doomed = rng.sample(sorted(live), deletes)
        _, report = update_index(store, emb, chunker, [article(i) for i in new], delete=[f"a{i}" for i in doomed])
        assert report.incremental
        live = (live | set(new)) - set(doomed)
    return live


def test_after_1000_adds_and_200_deletes_dense_search_matches_a_fresh_rebuild(env, tmp_path):
    store, emb, chunker = env
    live = _stream(store, emb, chunker, base=100, writes=100, adds=10, deletes=2)
    loaded = store.load()
    assert 1 < len(loaded.segments) <= build.MAX_DELTAS + 1, "small segments were merged"
    fresh, _ = update_index(IndexStore(tmp_path / "fresh"), emb, chunker, [article(i) for i in sorted(live)])
    assert {a.id for a in loaded.articles} == {f"a{i}" for i in live} == {a.id for a in fresh.articles}
    overlap = [len(set(top(loaded, emb, q)) & set(top(fresh, emb, q))) / 10 for q in queries()]
    assert np.mean(overlap) >= 0.99 - 1e-9, overlap  # the hash vectors tie, and ties may swap at rank 10
    for question in queries():  # exact search on both sides: the same scores, rank by rank
        vector = emb.embed([question], kind="query")[0]
        np.testing.assert_allclose([s for _, s in loaded.search(vector, 10)], [s for _, s in fresh.search(vector, 10)],
                                   rtol=1e-5)
    assert compaction_due(loaded)
    compacted = compact(store)
    assert len(compacted.segments) == 1 and {c.id for c in compacted.chunks} == {c.id for c in fresh.chunks}


def test_bm25_of_small_segments_stays_on_the_main_segments_scale(env, tmp_path):
    """Measured with this stream: top-10 overlap with a fresh build 0.97 with the main segment's frequencies,
    0.85 with each small segment's own (bm25s alone); after compaction the scores are a fresh build's."""
    store, emb, chunker = env
    live = _stream(store, emb, chunker, base=300, writes=10, adds=5, deletes=1)
    loaded = store.load()
    fresh, _ = update_index(IndexStore(tmp_path / "fresh"), emb, chunker, [article(i) for i in sorted(live)])
    lexical, fresh_lexical = load_lexical(loaded), load_lexical(fresh)
    same = [len({loaded.chunks[i].id for i, _ in lexical.search(q, 10)}
                & {fresh.chunks[i].id for i, _ in fresh_lexical.search(q, 10)}) / 10 for q in queries()]
    assert np.mean(same) >= 0.95, same
    compacted = compact(store)
    by_id = {c.id: i for i, c in enumerate(compacted.chunks)}
    order = [by_id[c.id] for c in fresh.chunks]
    for question in queries(10):
        np.testing.assert_allclose(load_lexical(compacted).scores(question)[order], fresh_lexical.scores(question),
                                   rtol=1e-5)


def test_compaction_folds_into_one_segment_and_keeps_writes_made_meanwhile(env, monkeypatch):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(i) for i in range(60)])
    for i in range(60, 70):
        update_index(store, emb, chunker, [article(i), article(i - 60, version=1)], delete=[f"a{i - 50}"])
    before = store.load()
    expected = top(before, emb, "banque taux inflation Lyon")
    real, raced = build._segment, []

    def segment_and_a_concurrent_write(*args, **kwargs):
        built = real(*args, **kwargs)
        if not raced:  # another writer commits while the compacted segment is being built
            raced.append("writing")
            update_index(store, emb, chunker, [article(99), article(0, version=2)], delete=["a30"])
        return built

    monkeypatch.setattr(build, "_segment", segment_and_a_concurrent_write)
    compacted = compact(store)
    assert raced and compacted is not None and len(compacted.segments) == 2, "the concurrent write's segment stays"
    loaded = store.load()
    ids = [a.id for a in loaded.articles]
    assert len(ids) == len(set(ids)) and set(ids) == {a.id for a in before.articles} - {"a30"} | {"a99"}
    assert [c.text for c in loaded.chunks if c.article_id == "a0"] == [c.text for c in chunker.chunk(article(0, 2))]
    monkeypatch.setattr(build, "_segment", real)
    final = compact(store)
    assert len(final.segments) == 1 and not final.tombstones and not compaction_due(final)
    assert top(store.load(), emb, "banque taux inflation Lyon") != [] and expected
    versions = [json.loads((v / "manifest.json").read_text()) for v in store.root.glob("v-*")]
    referenced = {e["name"] for m in versions for e in m["segments"]}
    assert len(versions) == 2 and {p.name for p in (store.root / "segments").iterdir()} == referenced, \
        "segments no kept version lists are pruned"
    assert compact(store) is None, "nothing to do on one segment without tombstones"


def test_a_follower_reads_only_the_new_segment(env):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(i) for i in range(60)])
    served = store.load()
    update_index(store, emb, chunker, [article(60)])
    followed = store.load(reuse=served)
    assert followed.segments[0] is served.segments[0] and len(followed.segments) == 2
    assert followed.segments[1] is not None and "a60" in followed.article_by_id


def test_bm25_weights_are_bm25s_and_stats_shift_them_to_the_whole_collection():
    import bm25s

    chunks = [c for i in range(30) for c in Chunker(target_tokens=64, overlap_tokens=8).chunk(article(i))]
    index = LexicalIndex.build(chunks)
    model = bm25s.BM25(k1=lexical_module.K1, b=lexical_module.B, method=lexical_module.METHOD)
    made = model.build_index_from_ids(list(range(len(index.vocab))), [d.tolist() for d in index.doc_ids],
                                      show_progress=False)
    ours = index._bm25.arrays
    np.testing.assert_array_equal(ours["indptr"], made["indptr"])
    np.testing.assert_array_equal(ours["indices"], made["indices"])
    np.testing.assert_allclose(ours["data"], made["data"], rtol=1e-5)
    stats = index.stats()
    assert stats.n_docs == len(chunks) and stats.df.get("absent") == 0
    assert stats.df.get("banqu") == sum(index.term_id["banqu"] in set(d.tolist()) for d in index.doc_ids) > 0
    half = LexicalIndex.build(chunks[len(chunks) // 2:], stats=LexicalIndex.build(chunks[:len(chunks) // 2]).stats())
    question = "banque taux inflation"
    np.testing.assert_allclose(half.scores(question), index.scores(question)[len(chunks) // 2:], rtol=1e-5)


def test_rag_index_writes_a_segment_then_compacts_when_due(tmp_path, monkeypatch, capsys):
    from newsrag.cli import main
    from rag.settings import get_settings

    monkeypatch.setattr(build, "INCREMENTAL_MIN", 5)
    for name, value in {"RAG_EMBEDDING_MODEL": "fake:64", "RAG_INDEX_DIR": str(tmp_path / "index")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        folder = tmp_path / "articles"
        folder.mkdir()
        for i in range(8):
            (folder / f"a{i}.txt").write_text(article(i).text, encoding="utf-8")
        assert main(["index", str(folder)]) == 0
        (tmp_path / "late.txt").write_text(article(50).text, encoding="utf-8")
        assert main(["index", "--no-compact", str(tmp_path / "late.txt")]) == 0
        assert "(a new segment)" in capsys.readouterr().out
        store = IndexStore(tmp_path / "index")
        assert len(store.load().segments) == 2 and compaction_due(store.load())
        assert main(["index", "--compact"]) == 0
        assert "compacted" in capsys.readouterr().err and len(store.load().segments) == 1
        assert main(["index", "--compact"]) == 0
        assert "nothing to compact" in capsys.readouterr().err
        (tmp_path / "later").mkdir()
        for i in (51, 52):
            (tmp_path / "later" / f"a{i}.txt").write_text(article(i).text, encoding="utf-8")
        assert main(["index", str(tmp_path / "later")]) == 0  # 2 of 11 chunks in a new segment: compacted
        assert "compacted" in capsys.readouterr().err and len(store.load().articles) == 11
        assert len(store.load().segments) == 1
    finally:
        get_settings.cache_clear()


def test_a_server_compacts_in_the_background_after_its_own_writes(tmp_path, monkeypatch):
    from rag.service import _COMPACTING, update_live
    from tests.fakes import fake_pipeline

    monkeypatch.setattr(build, "INCREMENTAL_MIN", 5)
    pipeline = fake_pipeline(tmp_path / "index", [article(i) for i in range(20)])
    served = pipeline.data.path
    report = update_live(pipeline, [article(60)])
    assert report.incremental and len(pipeline.data.segments) == 2, "1 chunk of 21 in a new segment: not due"
    report = update_live(pipeline, [article(61), article(62)])
    assert report.incremental
    with _COMPACTING:  # taken while the compaction thread runs: acquired once it is done
        pass
    data = pipeline.data
    assert data.path != served and len(data.segments) == 1 and {"a60", "a62"} <= set(data.article_by_id)
    assert len(data.articles) == 23


def test_bm25_stats_read_off_the_file_are_the_loaded_index_stats(env):
    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, [article(i) for i in range(60)])
    segment = data.segments[0]
    loaded, light = segment.lexical.stats(), LexicalIndex.stats_from_file(segment.path / "lexical.npz")
    assert (light.n_docs, light.total_length) == (loaded.n_docs, loaded.total_length) == (len(data.chunks),
                                                                                           light.total_length)
    assert all(light.df.get(t) == loaded.df.get(t) for t in segment.lexical.vocab)


def test_tombstones_are_skipped_inside_an_hnsw_search(env, monkeypatch):
    monkeypatch.setattr("index.segment.EXACT_MAX", 40)
    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, [article(i) for i in range(80)])
    assert data.manifest["faiss"]["type"] == "IndexHNSWFlat"
    gone = {f"a{i}" for i in range(0, 80, 2)}
    data, _ = update_index(store, emb, chunker, delete=sorted(gone))
    assert data.segments[0].faiss.hnsw is not None and data.tombstones >= 40
    for question in queries():
        vector = emb.embed([question], kind="query")[0]
        hits = data.search(vector, 10)
        assert len(hits) == 10 and not {data.chunks[i].article_id for i, _ in hits} & gone
        exact = np.sort(np.asarray(data.vectors) @ vector)[::-1][:10]
        assert np.isclose(hits[0][1], exact[0]), "the best live chunk is found"


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_retrieval_over_segments_never_returns_what_was_deleted_and_finds_what_was_added(env, mode):
    from rag.retriever import Filters, Retrieval

    store, emb, chunker = env
    update_index(store, emb, chunker, [article(i) for i in range(60)])
    gone = [f"a{i}" for i in range(0, 60, 4)]
    fresh = Article(id="new", title="Dépêche nouvelle", text="Le télescope photographie une galaxie lointaine "
                    "jamais vue : une première pour l'observatoire austral.", language="fr")
    data, _ = update_index(store, emb, chunker, [fresh], delete=gone)
    retrieval = Retrieval(store.load(reuse=data), emb)
    assert len(retrieval.data.segments) == 2 and retrieval.data.tombstones
    question = "télescope galaxie lointaine observatoire austral"
    for filters in (None, Filters(exclude_article_ids=("a1",))):
        hits = retrieval.search(question, emb.embed([question], kind="query")[0], 10, mode, filters)
        assert hits and hits[0].chunk.article_id == "new", [h.chunk.article_id for h in hits]
        assert not {h.chunk.article_id for h in hits} & {*gone, *(filters.exclude_article_ids if filters else ())}
        for hit in hits:  # the dense cosine of every hit is the stored vector's
            vector = emb.embed([build.passage_text(hit.chunk)])[0]
            assert np.isclose(hit.scores["dense"], vector @ emb.embed([question], kind="query")[0], atol=1e-5)
