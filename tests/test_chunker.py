"""Chunking: sentence packing, overlap, offsets, headings, word boundaries."""
import re

import pytest

from common.errors import ConfigError
from index.chunker import Chunker, split_sentences
from index.loaders import load_articles
from index.types import Article


@pytest.fixture(scope="module")
def chunker():
    return Chunker(target_tokens=64, overlap_tokens=16)


def test_spans_give_back_the_text(chunker):
    article = load_articles(["corpus"])[0]
    chunks = Chunker().chunk(article)
    assert len(chunks) > 5
    for c in chunks:
        assert article.text[c.start:c.end] == c.text
        assert c.article_id == article.id and c.date == "2025-06-24"
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    body = {i for i, ch in enumerate(article.text) if not ch.isspace()}
    assert body <= covered, "every non-space character belongs to some chunk"


def test_chunks_respect_the_target_and_overlap(chunker):
    text = " ".join(f"Phrase numéro {i} sur le partenariat entre les deux entreprises." for i in range(40))
    chunks = chunker.chunk(Article(id="a", title="T", text=text))
    assert len(chunks) > 3
    assert all(c.n_tokens <= 64 for c in chunks)
    assert all(chunker.count(c.text) <= 64 + 4 for c in chunks)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start < prev.end, "neighbours share an overlap"
        assert prev.end - nxt.start < len(prev.text)


def test_whole_sentences_only(chunker):
    text = " ".join(f"Le mot numéro {i} termine cette phrase." for i in range(30))
    for c in chunker.chunk(Article(id="a", title="T", text=text)):
        assert c.text.startswith("Le mot") and c.text.endswith("phrase.")


def test_long_sentence_is_cut_at_word_boundaries(chunker):
    words = [f"mot{i}" for i in range(300)]
    text = " ".join(words) + "."
    chunks = chunker.chunk(Article(id="a", title="T", text=text))
    assert len(chunks) > 2
    for c in chunks:
        assert c.n_tokens <= 64
        assert re.fullmatch(r"[\w. ]+", c.text)
        assert c.text.split()[0] in words and c.text.rstrip(".").split()[-1] in words


def test_headings_start_chunks_and_label_them():
    article = load_articles(["corpus"])[0]
    chunks = Chunker().chunk(article)
    faq = [c for c in chunks if c.heading == "FAQ"]
    assert faq and faq[0].text.startswith("## FAQ")
    assert any(c.heading == "Conclusion" for c in chunks)


def test_ids_are_stable_and_content_derived(chunker):
    a = Article(id="a", title="T", text="Une phrase. Une autre phrase.")
    assert [c.id for c in chunker.chunk(a)] == [c.id for c in chunker.chunk(a)]
    b = Article(id="a", title="T", text="Un préambule ajouté.\n\nUne phrase. Une autre phrase.")
    assert chunker.chunk(a)[0].id != chunker.chunk(b)[0].id


def test_sentence_splitter_knows_abbreviations_and_numbers():
    text = "M. Dupont a vu Mme Durand. Le coût : 13,5 milliards. Vraiment ? Oui… c'est ça. Fin."
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == ["M. Dupont a vu Mme Durand.", "Le coût : 13,5 milliards.", "Vraiment ?",
                         "Oui… c'est ça.", "Fin."]


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="overlap"):
        Chunker(target_tokens=64, overlap_tokens=40)
    with pytest.raises(ConfigError, match="too small"):
        Chunker(target_tokens=4, overlap_tokens=0)
