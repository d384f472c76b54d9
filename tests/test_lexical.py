"""BM25 lexical index: analysis (stemming, accents, stop words), scores against a NumPy oracle,
persistence in the index version, and incremental updates that keep dense and lexical in step."""
import math
from collections import Counter

import numpy as np
import pytest

from index.build import passage_text, update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.lexical import FILENAME, K1, B, LexicalIndex, analyze, document_text, load_lexical
from index.store import IndexStore
from index.types import Article, Chunk

# sha256 of the analysis of the bundled and test articles (see the test below)
ANALYSER_DIGEST = "5873649cba28d8320597f53df379d1bb63a87ee9e72fe82eb9ad5ecbcd4b6d8f"


def chunk(n, text, language="fr", title=""):
    return Chunk(id=f"a{n}#c", article_id=f"a{n}", title=title, text=text, start=0, end=len(text), language=language)


def article(n, text, language="fr"):
    return Article(id=f"a{n}", title=f"Article {n}", text=text, language=language)


def test_analysis_folds_accents_stems_and_drops_stop_words():
    assert analyze("Les élections présidentielles", "fr") == analyze("election presidentielle", "fr")
    assert analyze("Quelle est la capitale ?", "fr") == ["capital"]
    assert analyze("The elected presidents", "en") == analyze("elect president", "en")
    assert analyze("l'Élysée d'été", "fr") == analyze("Elysée", "fr") == ["elys"]  # elisions and "été" go


def test_the_analyser_is_byte_identical_to_the_one_stored_indexes_were_made_with():
    """BM25 terms are stored in every index (lexical.npz, ANALYZER_VERSION 1): the analysis must not drift.

    The digest was taken from the analyser as it was when version 1 was written (before text analysis
    moved to common/text.py); a change to folding, stop words or stemming fails here, and then needs
    ANALYZER_VERSION raised (indexes are rebuilt with a clear message) and this digest renewed."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    texts = [p.read_text(encoding="utf-8") for p in sorted((root / "corpus").iterdir()) if p.is_file()]
    texts += [p.read_text(encoding="utf-8") for p in sorted((root / "tests/data/articles").iterdir())]
    texts += ["What’s the Élysée's role? L’économie d'aujourd'hui — 13,5 milliards $",
              "Who founded Mistral AI in 2023?", "Qu'ont trouvé les archéologues dans le métro de Rome ?"]
    digest = hashlib.sha256()
    for text in texts:
        for language in ("fr", "en", "de"):
            digest.update(("\x1f".join(analyze(text, language)) + "\n").encode())
    assert digest.hexdigest() == ANALYSER_DIGEST


def test_french_question_finds_passage_despite_inflections_and_accents():
    chunks = [chunk(1, "Le gouvernement a présenté une réforme des retraites très contestée."),
              chunk(2, "Les élections régionales se sont déroulées dans le calme en décembre."),
              chunk(3, "La météo annonce de la pluie pour le week-end prochain.")]
    index = LexicalIndex.build(chunks)
    for question in ("Quand l'election regionale s'est-elle deroulee ?", "ÉLECTION RÉGIONALE décembre",
                     "Quelles élections se déroulaient ?"):
        assert index.search(question, 3)[0][0] == 1, question


def bm25_oracle(docs: list[list[str]], query: list[str]) -> np.ndarray:
    """Lucene BM25 written out from its definition."""
    n, avg = len(docs), sum(map(len, docs)) / len(docs)
    df = Counter(t for d in docs for t in set(d))
    scores = np.zeros(n)
    for i, doc in enumerate(docs):
        tf = Counter(doc)
        for term in set(query):
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                scores[i] += idf * tf[term] / (tf[term] + K1 * (1 - B + B * len(doc) / avg))
    return scores


def test_scores_match_bm25_oracle():
    texts = ["Microsoft investit dans OpenAI, et OpenAI grandit.", "OpenAI publie un modèle.",
             "Le partenariat entre Microsoft et OpenAI est renégocié en 2025.",
             "Rien à voir : la pluie et le beau temps."]
    chunks = [chunk(i, t) for i, t in enumerate(texts)]
    index = LexicalIndex.build(chunks)
    query = "Microsoft et OpenAI renégocient le partenariat"
    expected = bm25_oracle([analyze(document_text(c), "fr") for c in chunks], analyze(query, "fr"))
    np.testing.assert_allclose(index.scores(query, "fr"), expected, rtol=1e-5)
    ranked = index.search(query, 10, language="fr")
    assert [i for i, _ in ranked] == [i for i in np.argsort(-expected, kind="stable") if expected[i] > 0]
    allowed = np.array([True, True, False, True])
    assert [i for i, _ in index.search(query, 10, allowed, "fr")] == [i for i, _ in ranked if i != 2]


def test_persistence_round_trip(tmp_path):
    chunks = [chunk(1, "Le Sénat vote la loi de finances."), chunk(2, "The Senate passed the budget bill.", "en")]
    index = LexicalIndex.build(chunks)
    (tmp_path / FILENAME).write_bytes(index.to_bytes())
    loaded = LexicalIndex.from_file(tmp_path / FILENAME)
    assert loaded.keys == index.keys and loaded.vocab == index.vocab and loaded.language == index.language
    assert all(np.array_equal(a, b) for a, b in zip(loaded.doc_ids, index.doc_ids))
    for question in ("Sénat loi de finances", "senate budget"):
        assert loaded.search(question, 5) == index.search(question, 5)
    assert loaded.matches(chunks) and not loaded.matches(chunks[:1])


TEXTS = {
    1: "La Banque centrale européenne relève ses taux directeurs pour freiner l'inflation.",
    2: "Le club de football de Lyon remporte le championnat après une saison record.",
    3: "Un nouveau télescope spatial photographie des galaxies lointaines.",
}


@pytest.fixture
def store(tmp_path):
    return IndexStore(tmp_path / "idx")


def write(store, articles=(), delete=()):
    return update_index(store, FakeEmbedder(32), Chunker(), articles, delete=delete)


def test_lexical_file_is_in_the_version_and_its_manifest(store):
    data, _ = write(store, [article(n, t) for n, t in TEXTS.items()])
    segment = data.segments[0]
    assert (segment.path / FILENAME).is_file() and FILENAME in data.manifest["segments"][0]["checksums"]
    loaded = IndexStore(store.root).load()  # verifies every checksum, lexical.npz included
    lexical = load_lexical(loaded)
    assert lexical.matches(loaded.chunks)
    assert loaded.chunks[lexical.search("taux de la banque centrale", 1)[0][0]].article_id == "a1"


def test_incremental_add_and_delete_keep_dense_and_lexical_in_step(store, monkeypatch):
    write(store, [article(1, TEXTS[1]), article(2, TEXTS[2])])
    analysed = []
    import index.lexical as lexical_module

    real = lexical_module.analyze
    monkeypatch.setattr(lexical_module, "analyze", lambda text, lang: analysed.append(text) or real(text, lang))
    data, report = write(store, [article(3, TEXTS[3])])
    assert report.chunks_embedded == 1 and len(analysed) == 1, "only the new chunk is embedded and analysed"
    data, _ = write(store, delete=["a1"])
    assert len(analysed) == 1, "a delete analyses nothing"
    lexical = load_lexical(IndexStore(store.root).load())
    assert lexical.matches(data.chunks) and len(lexical) == len(data.vectors) == len(data.chunks)
    assert lexical.search("banque centrale taux", 5) == [], "the deleted article's terms are gone"
    assert "banqu" not in lexical.vocab
    hit = lexical.search("télescope galaxies", 1)[0][0]
    assert data.chunks[hit].article_id == "a3"
    vector = FakeEmbedder(32).embed([passage_text(data.chunks[hit])])[0]
    assert int(np.argmax(data.vectors @ vector)) == hit, "the same position is the same chunk on both sides"
    fresh = LexicalIndex.build(data.chunks)
    for question in ("télescope galaxies", "football Lyon championnat"):
        np.testing.assert_allclose(lexical.scores(question), fresh.scores(question), rtol=1e-6)


def test_missing_lexical_file_is_built_in_memory(store, caplog):
    written, _ = write(store, [article(1, TEXTS[1])])
    (written.segments[0].path / FILENAME).unlink()  # as a segment written before lexical search existed
    data = IndexStore(store.root).load(verify=False)
    lexical = load_lexical(data)
    assert lexical.matches(data.chunks) and "rebuild" in caplog.text
