"""The index on disk: incremental updates, manifest checks, atomic versions, search oracle."""

import json
import shutil

import numpy as np
import pytest

from common.errors import IndexMismatchError, IndexMissingError, NotFoundError
from common.paths import file_sha256
from index.build import update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.store import IndexStore, build_faiss
from index.types import Article


class CountingEmbedder(FakeEmbedder):
    """A fake embedder that counts how many texts it embedded."""

    def __init__(self, dim=32):
        super().__init__(dim)
        self.calls = 0

    def embed(self, texts, kind="passage"):
        self.calls += len(texts)
        return super().embed(texts, kind)


def article(i, extra=""):
    body = " ".join(f"Article {i}, phrase {j} sur le thème numéro {i}." for j in range(12))
    return Article(id=f"a{i}", title=f"Titre {i}", text=body + extra, date=f"2024-01-{i + 1:02d}", language="fr")


@pytest.fixture
def env(tmp_path):
    return IndexStore(tmp_path / "idx"), CountingEmbedder(), Chunker(target_tokens=64, overlap_tokens=8)


def test_incremental_update_embeds_only_what_changed(env):
    store, emb, chunker = env
    data, report = update_index(store, emb, chunker, [article(1), article(2)])
    first = emb.calls
    assert report.added == ["a1", "a2"] and first == len(data.chunks) > 2
    data, report = update_index(store, emb, chunker, [article(1), article(2)])
    assert report.unchanged == ["a1", "a2"] and not report.changed and emb.calls == first
    data, report = update_index(store, emb, chunker, [article(2, " Une phrase ajoutée à la fin.")])
    assert report.replaced == ["a2"] and 0 < emb.calls - first < len(data.chunks)
    data, report = update_index(store, emb, chunker, delete=["a1"])
    assert report.deleted == ["a1"] and {c.article_id for c in store.load().chunks} == {"a2"}
    with pytest.raises(NotFoundError, match="unknown article"):
        update_index(store, emb, chunker, delete=["nope"])


def test_vectors_match_a_fresh_build(env, tmp_path):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1), article(2)])
    update_index(store, emb, chunker, [article(2, " Fin modifiée.")])
    fresh, _ = update_index(IndexStore(tmp_path / "fresh"), emb, chunker, [article(1), article(2, " Fin modifiée.")])
    loaded = store.load()
    assert [c.id for c in loaded.chunks] == [c.id for c in fresh.chunks]
    np.testing.assert_allclose(loaded.vectors, fresh.vectors)


def test_prune_removes_articles_whose_files_are_gone(env, tmp_path):
    from index.loaders import load_articles

    store, emb, chunker = env
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"a{i}.md").write_text(f"---\nid: a{i}\n---\n{article(i).text}", encoding="utf-8")
    update_index(store, emb, chunker, load_articles([folder]))
    update_index(store, emb, chunker, [article(9)])  # added from elsewhere (the API, say)
    (folder / "a2.md").unlink()
    _, report = update_index(store, emb, chunker, load_articles([folder]), prune_under=[str(folder)])
    assert report.deleted == ["a2"]
    assert {a.id for a in store.load().articles} == {"a1", "a9"}


def test_manifest_mismatch_and_damage_are_refused(env):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1)])
    manifest = store.load().manifest
    assert manifest["model"] == emb.name and manifest["dimension"] == 32
    files = set(manifest["segments"][0]["checksums"])
    assert manifest["counts"]["articles"] == 1 and files >= {"chunks.jsonl", "faiss.index", "lexical.npz"}
    segment = store.load().segments[0].path
    assert not (segment / "vectors.npy").exists(), "the vectors are kept once, in faiss.index"
    with pytest.raises(IndexMismatchError, match="rebuild"):
        update_index(store, FakeEmbedder(16), chunker, [article(2)])
    with pytest.raises(IndexMismatchError, match="chunker"):
        update_index(store, emb, Chunker(target_tokens=128, overlap_tokens=8), [article(2)])
    vectors = segment / "faiss.index"
    raw = bytearray(vectors.read_bytes())
    raw[-3] ^= 0xFF
    vectors.write_bytes(bytes(raw))
    with pytest.raises(IndexMismatchError, match="damaged"):
        store.load()
    _, report = update_index(store, FakeEmbedder(16), chunker, [article(2)], rebuild=True)
    assert [a.id for a in store.load().articles] == ["a2"]


def test_a_failed_write_leaves_the_old_version_whole(env, monkeypatch):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1)])
    before = store.current_path()

    def boom(*_):
        raise OSError("disk full")

    segments = sorted(p.name for p in (store.root / "segments").iterdir())
    monkeypatch.setattr("index.store.fsync_dir", boom)  # the new version's manifest, after its segment
    with pytest.raises(OSError):
        update_index(store, emb, chunker, [article(2)])
    assert store.current_path() == before and [a.id for a in store.load().articles] == ["a1"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]
    assert sorted(p.name for p in (store.root / "segments").iterdir()) == segments, "its segment is removed"


def test_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(IndexMissingError, match="rag index"):
        IndexStore(tmp_path / "none").load()


def test_search_matches_numpy_oracle():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_faiss(vectors)
    for q in vectors[:5] + 0.1:
        scores, ids = index.search(q[None, :].astype(np.float32), 5)
        oracle = np.argsort(-(vectors @ q))[:5]
        assert list(ids[0]) == list(oracle)


def test_filters_restrict_search(env):
    from rag.retriever import Filters, Retrieval, RetrievalConfig

    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, [article(1), article(2), article(3)],
                           duplicate_threshold=1.1)  # templated texts: copies of each other otherwise
    retrieval = Retrieval(data, emb, RetrievalConfig(mode="dense"))
    question = "phrase sur le thème numéro 2"
    q = retrieval.embed(question)
    hits = retrieval.search(question, q, 50, filters=Filters(article_ids=("a1", "a3")))
    assert hits and {h.chunk.article_id for h in hits} == {"a1", "a3"}
    hits = retrieval.search(question, q, 50, filters=Filters(date_from="2024-01-04"))
    assert {h.chunk.article_id for h in hits} == {"a3"}
    scores = [h.score for h in retrieval.search(question, q, 50)]
    assert scores == sorted(scores, reverse=True)


def test_crash_leftovers_are_cleaned_and_the_real_previous_version_kept(env, monkeypatch):
    """A crash between the folder's rename and CURRENT's replace leaves an orphan version newer than
    the live one, and a crash inside the replace leaves a ``.CURRENT.<hex>`` file: the next write
    removes both and keeps the version CURRENT named (not the orphan, which sorts after it)."""
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1)])
    live = store.current_path().name
    (store.root / ".CURRENT.abc123").write_text("v-garbage\n")
    orphan = store.root / f"v-{int(live.split('-')[1]) + 1:020d}-ffffff"
    orphan.mkdir()
    (orphan / "manifest.json").write_text("{}")
    update_index(store, emb, chunker, [article(1), article(2)])
    names = sorted(p.name for p in store.root.iterdir() if not p.name.startswith(".lock"))
    assert names == sorted(["CURRENT", "segments", live, store.current_path().name]), names


def test_a_reader_that_loses_a_race_with_two_writes_reads_the_new_version(env, monkeypatch):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1)])
    real_load, raced = IndexStore._load, []

    def slow_reader(self, path, expect, verify, reuse, lazy=False):
        if not raced:  # two writes land while this reader is between CURRENT and its files
            raced.append(path)
            update_index(store, emb, chunker, [article(1), article(2)])
            update_index(store, emb, chunker, [article(1), article(2), article(3)])
            assert not path.exists(), "its version was pruned"
        return real_load(self, path, expect, verify, reuse, lazy)

    monkeypatch.setattr(IndexStore, "_load", slow_reader)
    assert [a.id for a in store.load().articles] == ["a1", "a2", "a3"]


def test_a_damaged_live_version_is_still_reported(env):
    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1)])
    (store.current_path() / "manifest.json").unlink()
    with pytest.raises(IndexMismatchError, match="rebuild"):
        store.load()


def test_embedding_happens_outside_the_writer_lock(env):
    """A slow write (its embedding held up) does not hold the lock: another write commits meanwhile,
    and the slow one then commits on top of it, losing nothing."""
    import threading

    store, emb, chunker = env
    update_index(store, emb, chunker, [article(1)])
    entered, release = threading.Event(), threading.Event()

    class Held(CountingEmbedder):
        def embed(self, texts, kind="passage"):
            entered.set()
            assert release.wait(30)
            return super().embed(texts, kind)

    slow = threading.Thread(target=update_index, args=(store, Held(), chunker, [article(1), article(2)]))
    slow.start()
    assert entered.wait(30)
    _, quick = update_index(store, emb, chunker, [article(1), article(3)])
    assert quick.added == ["a3"], "committed while the slow write was embedding"
    release.set()
    slow.join(30)
    assert sorted(a.id for a in store.load().articles) == ["a1", "a2", "a3"]


def test_vectors_are_a_view_of_the_faiss_storage_and_survive_reloads(env):
    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, [article(1), article(2)])
    loaded = store.load()
    assert not loaded.vectors.flags.owndata and not loaded.vectors.flags.writeable
    np.testing.assert_array_equal(loaded.vectors, data.vectors)
    assert loaded.vectors.shape == (len(loaded.chunks), 32)
    with pytest.raises(ValueError):
        loaded.vectors[0, 0] = 1.0


def test_an_index_of_the_previous_layout_with_vectors_npy_still_loads(env):
    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, [article(1)])
    folder = store.current_path()
    segment = data.segments[0].path
    for name in ("articles.jsonl", "chunks.jsonl", "faiss.index"):  # the layout before segments
        (folder / name).write_bytes((segment / name).read_bytes())
    np.save(folder / "vectors.npy", data.vectors)  # what versions written before that kept beside faiss.index
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["segments"], manifest["tombstones"]
    manifest["checksums"] = {f: file_sha256(folder / f) for f in ("articles.jsonl", "chunks.jsonl", "faiss.index",
                                                                  "vectors.npy")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(store.root / "segments")
    legacy = store.load()
    np.testing.assert_array_equal(legacy.vectors, data.vectors)
    assert legacy.segments[0].legacy and [a.id for a in legacy.articles] == ["a1"]
    update_index(store, emb, chunker, [article(2)])
    rewritten = store.load()
    assert [a.id for a in rewritten.articles] == ["a1", "a2"] and not rewritten.segments[0].legacy
    assert not (store.current_path() / "vectors.npy").exists() and "segments" in rewritten.manifest


def test_a_faiss_file_that_disagrees_with_the_chunks_is_refused(env):
    import faiss

    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, [article(1), article(2)])
    folder = data.segments[0].path
    faiss.write_index(faiss.IndexFlatIP(32), str(folder / "faiss.index"))
    with pytest.raises(IndexMismatchError, match="vectors for"):
        store.load(verify=False)


def test_an_hnsw_index_gets_the_efsearch_that_reaches_the_recall_target(monkeypatch, tmp_path):
    import index.segment as segment_module
    import index.store as store_module
    from index.types import Chunk

    monkeypatch.setattr("index.segment.EXACT_MAX", 1000)
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(50, 32)).astype(np.float32)
    vectors = centroids[rng.integers(0, 50, 6000)] + rng.normal(scale=0.15, size=(6000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(id=f"c{i}", article_id=f"a{i}", title="", text="x", start=0, end=1) for i in range(6000)]
    data = store_module.IndexData({"format": store_module.FORMAT, "faiss": store_module.faiss_description(6000)},
                                  [], chunks, vectors)
    tuned = data.manifest["faiss"]
    assert tuned["type"] == "IndexHNSWFlat" and data.faiss.hnsw.efSearch == tuned["efSearch"]
    assert tuned["efSearch"] in store_module.EF_SEARCH_CHOICES
    by_ef = tuned["recall_by_efSearch"]
    choices, chosen = store_module.EF_SEARCH_CHOICES, tuned["efSearch"]
    following = str(choices[choices.index(chosen) + 1]) if chosen != choices[-1] else None
    assert (tuned["recall@10"] >= store_module.RECALL_TARGET or chosen == choices[-1]
            or by_ef[following] - by_ef[str(chosen)] < segment_module.RECALL_PLATEAU), by_ef  # no gain past it
    assert all(r < store_module.RECALL_TARGET for ef, r in by_ef.items() if int(ef) < tuned["efSearch"]), by_ef
    store = IndexStore(tmp_path / "idx")
    with store.lock():
        store.write(data)
    loaded = store.load()
    assert loaded.faiss.hnsw.efSearch == tuned["efSearch"] and loaded.manifest["faiss"]["efSearch"] == tuned["efSearch"]
