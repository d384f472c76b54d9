"""Names across languages: a French question over an English article (and the reverse) finds the
article's spelling of its names instead of abstaining for want of them. Real e5 model."""
import pytest

ARTICLES = {
    "dutch-farm-law.md": """---
id: dutch-farm-law
title: "Dutch parliament passes the nitrogen law"
date: 2025-03-12
language: en
---

The parliament of the Netherlands passed the nitrogen law on 12 March 2025, after two years of protests by farmers.
The law requires livestock farms near protected nature areas to cut their nitrogen emissions by half before 2030.
""",
    "or-des-banques-suisses.md": """---
id: or-des-banques-suisses
title: "L'or des banques suisses"
date: 2025-05-20
language: fr
---

Les banques suisses conservent environ 1 040 tonnes d'or dans leurs coffres, selon la Banque nationale.
La moitié de ce stock est gardée sous les Alpes, dans d'anciens abris militaires reconvertis.
""",
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, embedder):
    from rag.pipeline import Pipeline
    from rag.service import index_paths
    from rag.settings import Settings

    folder = tmp_path_factory.mktemp("cross-language")
    for name, text in ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = Settings(index_dir=tmp_path_factory.mktemp("cross-language-index"))
    data, _ = index_paths(settings, embedder, [folder])
    return Pipeline(settings, embedder, data)


@pytest.mark.slow
@pytest.mark.parametrize("question, name, article", [
    ("Quand le parlement des Pays-Bas a-t-il voté la loi sur l'azote ?", "Pays-Bas", "dutch-farm-law"),
    ("How much gold do Swiss banks keep?", "Swiss", "or-des-banques-suisses"),
])
def test_a_name_spelt_otherwise_in_the_articles_language_is_found(pipeline, question, name, article):
    answer = pipeline.ask(question)
    assert not answer.abstained, answer.notes
    assert any(note.startswith("names found in the other language") and name in note for note in answer.notes)
    assert answer.citations[0].article_id == article


@pytest.mark.slow
def test_a_name_the_article_does_not_hold_in_any_language_still_abstains(pipeline):
    answer = pipeline.ask("Quand le parlement de la Belgique a-t-il voté la loi sur l'azote ?")
    assert answer.abstained
    assert any("Belgique" in note for note in answer.notes)
