"""Wire copies (index/duplicates.py): found when indexed, kept once in retrieval with their copies listed;
and versions: a replaced article keeps its earlier versions' dates."""
from __future__ import annotations

import random

import pytest

import index.build as build
from index import duplicates
from index.build import update_index
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.store import IndexStore
from index.types import Article
from rag.retriever import Filters, Retrieval, RetrievalConfig

STORY = ("Le conseil métropolitain a voté jeudi soir le report de l'ouverture de la ligne F du tramway. "
         "Les travaux du viaduc de la Bastille ont pris six mois de retard après la découverte de vestiges. "
         "La mise en service est désormais prévue pour septembre 2025, selon le vice-président aux mobilités. "
         "Le budget total de la ligne reste fixé à 412 millions d'euros, dont 80 millions apportés par l'État. "
         "Les commerçants du cours Berriat réclament des indemnités pour la durée du chantier prolongé. "
         "Une réunion publique est organisée le 12 mars à la maison des associations.")
OTHER_STORIES = [  # the same topic, the same names, other events
    "La ligne F du tramway a été inaugurée par la maire en présence du vice-président aux mobilités. "
    "Les premières rames ont circulé dès six heures, et la fréquentation a dépassé les prévisions du réseau. "
    "Les commerçants du cours Berriat saluent la fin d'un chantier de trois ans.",
    "Les vestiges découverts sous le viaduc de la Bastille datent de l'époque romaine, selon l'Inrap. "
    "Un mur d'enceinte et une voie pavée ont été mis au jour par les archéologues durant l'hiver. "
    "Les fouilles préventives doivent s'achever avant la reprise des travaux du tramway.",
    "Le réseau de bus sera réorganisé autour de la ligne F du tramway à la rentrée. "
    "Quatre lignes de bus seront supprimées et deux autres prolongées vers le campus. "
    "Le vice-président aux mobilités promet une concertation avec les usagers en avril.",
]


def copy_of(text: str, seed: int) -> str:
    """An agency copy: a credit line, a sentence dropped, a few words changed."""
    rng = random.Random(seed)
    sentences = text.split(". ")
    del sentences[rng.randrange(1, len(sentences))]
    words = ". ".join(sentences).split()
    for _ in range(3):
        words[rng.randrange(len(words))] = rng.choice(["mardi", "récemment", "officiellement", "ainsi"])
    return " ".join(words) + " (Agence Presse Europe)"


def articles() -> list[Article]:
    out = [Article("tram-original", "Tramway : la ligne F retardée", STORY, "2025-03-02", source="Le Dauphiné",
                   language="fr")]
    out += [Article(f"tram-copy-{i}", "Ligne F : l'ouverture reportée", copy_of(STORY, i), "2025-03-03",
                    source=f"Journal {i}", language="fr") for i in range(4)]
    out += [Article(f"tram-other-{i}", f"Tramway, épisode {i}", text, f"2025-0{4 + i}-01", source="Le Dauphiné",
                    language="fr") for i, text in enumerate(OTHER_STORIES)]
    return out


@pytest.fixture
def env(tmp_path):
    return IndexStore(tmp_path / "idx"), FakeEmbedder(64), Chunker(target_tokens=256, overlap_tokens=16)


def test_edited_copies_score_far_above_distinct_stories_of_one_topic():
    copies = [duplicates.jaccard(duplicates.shingles(STORY), duplicates.shingles(copy_of(STORY, i))) for i in range(4)]
    distinct = [duplicates.jaccard(duplicates.shingles(STORY), duplicates.shingles(t)) for t in OTHER_STORIES]
    assert min(copies) >= 0.6 > 0.1 >= max(distinct)
    a, b = duplicates.signature(STORY), duplicates.signature(copy_of(STORY, 0))
    assert abs(a.jaccard(b) - copies[0]) < 0.12, "the MinHash estimate is close to the exact Jaccard"
    assert duplicates.decode(duplicates.encode(a)).jaccard(a) == 1.0


def test_copies_in_one_write_share_the_first_published_version_as_their_story(env):
    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, articles())
    stories = {a.id: a.story for a in data.articles}
    assert stories["tram-original"] == ""
    assert all(stories[f"tram-copy-{i}"] == "tram-original" for i in range(4))
    assert all(stories[f"tram-other-{i}"] == "" for i in range(3)), "distinct stories of one topic are not copies"
    loaded = store.load()
    assert {a.id: a.story for a in loaded.articles} == stories, "stories are stored with the records"
    assert [a.id for a in loaded.copies("tram-copy-2")] == ["tram-original", "tram-copy-0", "tram-copy-1",
                                                           "tram-copy-3"]


def test_five_copies_never_fill_the_five_passages_and_each_lists_the_others(env):
    store, emb, chunker = env
    data, _ = update_index(store, emb, chunker, articles())
    retrieval = Retrieval(data, emb, RetrievalConfig(mode="hybrid"))
    question = "Quand la ligne F du tramway ouvrira-t-elle, après le retard du viaduc de la Bastille ?"
    hits = retrieval.search(question, retrieval.embed(question), 5)
    stories = [data.article_by_id[h.chunk.article_id].story_id for h in hits]
    assert stories.count("tram-original") == 1, "the story is kept once"
    assert len(set(stories)) >= 3 and len(hits) == 4, "the other passages come from other stories"
    kept = next(h for h in hits if data.article_by_id[h.chunk.article_id].story_id == "tram-original")
    assert len(kept.copies) == 4 and {c["source"] for c in kept.copies} >= {"Journal 0", "Journal 1"}
    assert kept.source in {"Le Dauphiné", "Journal 0", "Journal 1", "Journal 2", "Journal 3"}
    # a source filter picks the copy of that outlet
    only = retrieval.search(question, retrieval.embed(question), 5, filters=Filters(sources=("journal 2",)))
    assert [h.chunk.article_id for h in only] == ["tram-copy-2"]


def test_a_copy_written_later_is_found_through_the_index_also_on_a_segmented_one(env, monkeypatch):
    store, emb, chunker = env
    monkeypatch.setattr(build, "INCREMENTAL_MIN", 5)
    first = [a for a in articles() if a.id != "tram-copy-3"]
    update_index(store, emb, chunker, first)
    late = next(a for a in articles() if a.id == "tram-copy-3")
    data, report = update_index(store, emb, chunker, [late])
    assert report.incremental and len(data.segments) == 2
    assert data.article_by_id["tram-copy-3"].story == "tram-original"


def test_a_replaced_article_keeps_its_versions_dates_and_its_story(env):
    store, emb, chunker = env
    update_index(store, emb, chunker, articles())
    original = articles()[0]
    corrected = Article(original.id, original.title, original.text.replace("412 millions", "421 millions")
                        + " Correction : une version précédente indiquait 412 millions d'euros.",
                        original.date, source=original.source, language="fr", updated="2025-03-05")
    data, report = update_index(store, emb, chunker, [corrected])
    assert report.replaced == ["tram-original"]
    record = store.load().article_by_id["tram-original"]
    assert record.updated == "2025-03-05" and "421 millions" in record.text
    assert [(v["date"], v["updated"]) for v in record.history] == [("2025-03-02", "")]
    assert record.history[0]["content_hash"] == original.content_hash and record.history[0]["replaced_at"]
    assert record.story == "", "the first version stays the story's own"
    assert data.article_by_id["tram-copy-0"].story == "tram-original"
    again = Article(**{**corrected.__dict__, "text": corrected.text + " Mise à jour.", "updated": "2025-03-07"})
    _, report = update_index(store, emb, chunker, [again])
    assert [v["updated"] for v in store.load().article_by_id["tram-original"].history] == ["", "2025-03-05"]


def test_an_article_with_the_url_of_an_indexed_one_replaces_it_under_its_id(env):
    store, emb, chunker = env
    first = Article("tram-v1", "Tramway : la ligne F retardée", STORY, "2025-03-02", url="https://a.example/tram",
                    language="fr")
    update_index(store, emb, chunker, [first, *articles()[5:]])
    again = Article("tram-v2", first.title, STORY.replace("412 millions", "421 millions"), first.date,
                    url=" https://a.example/tram ", language="fr", updated="2025-03-04")
    data, report = update_index(store, emb, chunker, [again])
    assert report.same_url == {"tram-v2": "tram-v1"} and report.replaced == ["tram-v1"] and not report.added
    assert "tram-v2 has the URL of tram-v1" in report.summary()
    record = store.load().article_by_id["tram-v1"]
    assert "421 millions" in record.text and record.updated == "2025-03-04" and len(record.history) == 1
    assert "tram-v2" not in data.article_by_id
