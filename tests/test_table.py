"""What a loaded index keeps on disk: chunks and article text read by row, BM25 memory-mapped, vectors
quantised past a size. Each is checked against what was written, and against the in-memory path."""
import io
import json
import random
import shutil
import zipfile

import numpy as np
import pytest

from index.build import update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.lexical import LexicalIndex
from index.store import ArticleRecord, IndexData, IndexStore, StoredArticle
from index.table import ChunkTable, Column
from index.types import Article, Chunk


def article(i: int) -> Article:
    body = " ".join(f"Dépêche {i}, phrase {j} : le conseil numéro {i % 7} a voté la mesure {j * i}." for j in range(14))
    return Article(id=f"a{i}", title=f"Titre {i}", text=body, date=f"2024-0{1 + i % 9}-{1 + i % 27:02d}",
                   language="fr" if i % 3 else "en", source=f"Agence {i % 4}")


@pytest.fixture
def written(tmp_path):
    store, embedder = IndexStore(tmp_path / "idx"), FakeEmbedder(32)
    data, _ = update_index(store, embedder, Chunker(target_tokens=48, overlap_tokens=8),
                           [article(i) for i in range(40)], duplicate_threshold=1.1)
    return store, data


def test_a_loaded_segment_reads_its_chunks_and_texts_from_disk_as_written(written):
    store, built = written
    loaded = store.load()
    table = loaded.segments[0].chunks
    assert isinstance(table, ChunkTable) and not table.in_memory and len(table) == len(built.chunks)
    assert list(loaded.chunks) == list(built.chunks)  # streamed in order
    order = list(range(len(built.chunks)))
    random.Random(0).shuffle(order)
    assert [loaded.chunks[i] for i in order] == [built.chunks[i] for i in order]  # read by row
    assert loaded.chunks[-1] == built.chunks[-1] and loaded.chunks[2:5] == built.chunks[2:5]
    with pytest.raises(IndexError):
        loaded.chunks[len(built.chunks)]  # noqa: B018
    record = loaded.article_by_id["a7"]
    assert isinstance(record, StoredArticle) and getattr(record, "_text", None) is None
    assert record == built.article_by_id["a7"] and record.text == article(7).text and record.minhash
    assert hash(record) == hash(built.article_by_id["a7"])


def test_a_segment_is_read_from_its_sidecar_without_parsing_lines_and_without_one_by_scanning(written, monkeypatch):
    import index.table as table

    store, built = written
    folder = store.load().segments[0].path
    assert (folder / table.ROWS_FILE).exists()
    with monkeypatch.context() as patched:
        patched.setattr(table, "scan", lambda *a: pytest.fail("a segment with a sidecar was scanned"))
        fast = store.load()
    (folder / table.ROWS_FILE).unlink()
    scanned = store.load(verify=False)
    for data in (fast, scanned):
        assert list(data.chunks) == list(built.chunks) and data.articles == built.articles
        assert data.chunks.column("date").codes.tolist() == built.chunks.column("date").codes.tolist()
        assert data.segments[0].chunks.key_digest == built.segments[0].chunks.key_digest
    assert table.read_rows(folder, ArticleRecord) is None


def test_a_sidecar_that_does_not_end_where_its_files_do_is_not_used(written, tmp_path):
    import index.table as table

    store, _ = written
    folder = tmp_path / "copy"
    shutil.copytree(store.load().segments[0].path, folder)
    assert table.read_rows(folder, ArticleRecord) is not None
    with open(folder / "chunks.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "x", "article_id": "a0", "title": "", "text": "", "start": 0, "end": 0}) + "\n")
    assert table.read_rows(folder, ArticleRecord) is None


def test_a_pruned_segment_stays_readable_by_the_version_that_loaded_it(written):
    store, built = written
    loaded = store.load()
    shutil.rmtree(loaded.segments[0].path)  # as a later write prunes a segment no version lists
    assert loaded.chunks[3].text == built.chunks[3].text
    assert loaded.article_by_id["a5"].text == article(5).text


def test_filter_masks_from_columns_match_a_per_chunk_oracle(written):
    from rag.retriever import Filters

    store, built = written
    loaded = store.load()
    rng = random.Random(1)
    dates = sorted({c.date for c in built.chunks})
    for _ in range(30):
        filters = Filters(article_ids=tuple(rng.sample([f"a{i}" for i in range(45)], rng.randint(0, 5))),
                          exclude_article_ids=tuple(rng.sample([f"a{i}" for i in range(40)], rng.randint(0, 3))),
                          date_from=rng.choice(["", *dates]), date_to=rng.choice(["", *dates]),
                          language=rng.choice(["", "fr", "en", "de"]), sources=rng.choice([(), ("agence 1",)]))
        sources = {a.id: a.source.lower() for a in built.articles}
        expected = [(not filters.article_ids or c.article_id in filters.article_ids)
                    and c.article_id not in filters.exclude_article_ids
                    and (not filters.date_from or c.date >= filters.date_from)
                    and (not filters.date_to or c.date <= filters.date_to)
                    and (not filters.language or c.language == filters.language)
                    and (not filters.sources or sources[c.article_id] == "agence 1") for c in built.chunks]
        assert filters.mask(loaded).tolist() == expected, filters
        assert filters.mask(built).tolist() == expected, filters


def test_columns_of_several_segments_keep_only_live_rows():
    a = Column.of(["x", "y", "x", "z"])
    b = Column.of(["z", "w"])
    merged = Column.concat([a, b], [np.array([True, False, True, True]), np.array([False, True])])
    assert [merged.values[c] for c in merged.codes] == ["x", "x", "z", "w"]
    assert merged.where(lambda v: v in {"x", "w"}).tolist() == [True, True, False, True]


def test_bm25_is_memory_mapped_and_scores_as_built(written):
    store, built = written
    loaded = store.load()
    stored, fresh = loaded.segments[0].lexical, LexicalIndex.build(list(built.chunks))
    assert isinstance(stored._bm25.arrays["data"], np.memmap) and stored._keys is None  # keys parsed lazily
    for question in ("le conseil a voté la mesure", "Dépêche 12", "mesure 39"):
        assert np.allclose(stored.scores(question, "fr"), fresh.scores(question, "fr"))
    assert stored.keys == fresh.keys and [d.tolist() for d in stored.doc_ids] == [d.tolist() for d in fresh.doc_ids]


def test_a_lexical_file_of_the_previous_format_still_loads(written, tmp_path):
    store, built = written
    path = store.load().segments[0].path / "lexical.npz"
    fresh = LexicalIndex.build(list(built.chunks))
    with np.load(path) as npz:  # the previous format: the keys inside the meta, no digest
        arrays = {name: npz[name] for name in npz.files if name != "keys"}
        meta = json.loads(arrays["meta"].tobytes().decode())
    meta = {k: v for k, v in meta.items() if k != "keys_sha1"} | {"keys": fresh.keys}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # compressed members are read into memory, not mapped
    old = tmp_path / "old.npz"
    old.write_bytes(buffer.getvalue())
    assert zipfile.ZipFile(old).infolist()[0].compress_type == zipfile.ZIP_DEFLATED
    index = LexicalIndex.from_file(old)
    assert index.matches(ChunkTable.of(built.chunks)) and index.matches(list(built.chunks))
    assert np.allclose(index.scores("conseil numéro 3", "fr"), fresh.scores("conseil numéro 3", "fr"))


def test_past_the_compression_size_vectors_are_quantised_and_recall_is_measured(monkeypatch, tmp_path):
    import index.segment as segment

    monkeypatch.setattr(segment, "EXACT_MAX", 1000)
    monkeypatch.setattr(segment, "COMPRESS_MIN", 3000)
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(60, 32)).astype(np.float32)
    vectors = centroids[rng.integers(0, 60, 4000)] + rng.normal(scale=0.2, size=(4000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(id=f"c{i}", article_id=f"a{i}", title="", text=f"texte {i}", start=0, end=7) for i in range(4000)]
    records = [ArticleRecord(f"a{i}", "", f"texte {i}", "", "", "", "fr", "", f"h{i}", 1) for i in range(4000)]
    data = IndexData({"format": 1, "faiss": segment.faiss_description(4000)}, records, chunks, vectors)
    info = data.manifest["faiss"]
    assert info["type"] == "IndexHNSWSQ" and info["quantizer"] == "QT_8bit" and "recall@10" in info
    store = IndexStore(tmp_path / "idx")
    with store.lock():
        store.write(data)
    loaded = store.load()
    assert type(loaded.faiss).__name__ == "IndexHNSWSQ" and loaded.faiss.hnsw.efSearch == info["efSearch"]
    decoded = loaded.vectors[np.arange(4000)]
    assert decoded.shape == (4000, 32) and np.min(np.sum(decoded * vectors, axis=1)) > 0.99
    assert np.array_equal(np.asarray(loaded.vectors), decoded) and loaded.vectors[5].shape == (32,)
    truth = segment.exact_top(vectors, vectors[:100], 10)
    found = [[i for i, _ in loaded.search(v, 10)] for v in vectors[:100]]
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]) >= 0.9
    allowed = np.zeros(4000, dtype=bool)
    allowed[::7] = True
    assert all(i % 7 == 0 for i, _ in loaded.search(vectors[0], 10, allowed))  # filtered: decoded rows
    import faiss

    assert faiss.downcast_index(loaded.faiss.storage).code_size == 32  # a byte a dimension, not four
