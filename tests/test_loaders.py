"""Loading articles from every supported format, and refusing bad input clearly."""
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import InputError
from index.loaders import load_articles


def test_bundled_markdown_article():
    [article] = load_articles(["corpus"])
    assert article.id == "openai-microsoft-partenariat"
    assert article.date == "2025-06-24" and article.language == "fr"
    assert "13 milliards de dollars" in article.text
    assert "Cours de bourse" not in article.text, "web-page debris is dropped"


def test_plain_text(tmp_path):
    (tmp_path / "Une Brève.txt").write_text("Le titre\nLe texte de l'article est là.\n", encoding="utf-8")
    [article] = load_articles([tmp_path])
    assert article.id == "une-breve" and article.title == "Le titre" and article.language == "fr"


def test_html_main_text(tmp_path):
    page = """<html><head><title>Big news</title><meta name="date" content="2024-03-05"></head><body>
    <nav>Home | Sports | Weather</nav><article><h1>Big news</h1>
    <p>The council approved the new budget on Tuesday after a long debate about the costs of the tramway.</p>
    <p>The mayor said the work would start in the spring and last for two years, with three new stations.</p>
    </article><footer>Copyright 2024</footer></body></html>"""
    (tmp_path / "news.html").write_text(page, encoding="utf-8")
    [article] = load_articles([tmp_path / "news.html"])
    assert "council approved the new budget" in article.text
    assert "Home | Sports" not in article.text and "Copyright" not in article.text
    assert article.title == "Big news" and article.language == "en"


def test_jsonl_records(tmp_path):
    rows = [{"id": "a1", "title": "Un", "date": "2024-01-02", "url": "https://x.test/1", "text": "Premier texte."},
            {"id": "a2", "title": "Deux", "text": "Second text here."}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    articles = load_articles([tmp_path / "a.jsonl"])
    assert [a.id for a in articles] == ["a1", "a2"]
    assert articles[0].url == "https://x.test/1" and articles[0].date == "2024-01-02"


def test_squad_titles_become_articles(tmp_path):
    squad = {"data": [{"title": "Paris",
                       "paragraphs": [{"context": "Paris est la capitale.", "qas": []},
                                      {"context": "Elle compte deux millions d'habitants.", "qas": []}]}]}
    (tmp_path / "s.json").write_text(json.dumps(squad), encoding="utf-8")
    [article] = load_articles([tmp_path / "s.json"])
    assert (article.title == "Paris"
            and article.text == "Paris est la capitale.\n\nElle compte deux millions d'habitants.")


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"id": "x", "text": "ok"}\nnot json\n', r"bad.jsonl:2: not valid JSON"),
    ("notext.jsonl", '{"id": "x"}\n', "string `text`"),
    ("bad.json", '{"foo": 1}', "SQuAD format"),
    ("squad1.json", '{"data": [1]}', r"data\[0\] must be a JSON object, not int"),
    ("squad2.json", '{"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}', r"paragraphs\[0\]\.context is missing"),
    ("squad3.json", '{"data": [{"title": "T", "paragraphs": "texte"}]}', r"data\[0\]\.paragraphs must be a list"),
    ("squad4.json", '{"data": [{"title": 3, "paragraphs": []}]}', r"data\[0\]\.title must be a string, not int"),
    ("squad5.json", '{"data": [{"paragraphs": [{"context": "C.", "qas": [{"id": "q", "question": "Q ?", '
                    '"answers": [{"text": "C", "answer_start": "0"}]}]}]}]}', r"answer_start must be a whole number"),
    ("date.md", "---\ndate: 24/06/2025\n---\nTexte.", "YYYY-MM-DD"),
    ("empty.md", "---\ntitle: Rien\n---\n\n", "no text"),
    ("month.md", "---\ndate: 2025-13-45\n---\nTexte.", r"month.md: field `date`: date '2025-13-45' does not exist"),
    ("feb.md", "---\ndate: 2025-02-30\n---\nTexte.", r"feb.md: field `date`: date '2025-02-30' does not exist"),
    ("quoted.md", "---\ndate: '2025-02-30'\n---\nTexte.", "does not exist"),
    ("time.md", "---\ndate: 2025-02-03T25:00\n---\nTexte.", "does not exist"),
    ("date.jsonl", '{"text": "T.", "date": "2025-02-30"}\n', r"date.jsonl:1: field `date`: .* does not exist"),
    ("zw.md", "---\ntitle: Rien\n---\n\u200b\u200b\ufeff\u2060\n", "only spaces or invisible characters"),
    ("zw.jsonl", '{"text": "\\u200b\\u200c"}\n', r"zw.jsonl:1: the article has no text"),
    ("list.md", "---\ntitle: [a, b]\n---\nTexte.", "field `title` must be text, not a list"),
    ("map.jsonl", '{"text": "T.", "source": {"a": 1}}\n', "field `source` must be text, not a mapping"),
    ("badid.md", "---\nid: 'a b/c'\n---\nTexte.", "invalid article id"),
])
def test_bad_input_says_what_to_fix(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_articles([tmp_path / name])


def test_duplicate_ids_and_missing_paths(tmp_path):
    (tmp_path / "a.md").write_text("---\nid: same\n---\nUn.", encoding="utf-8")
    (tmp_path / "b.md").write_text("---\nid: same\n---\nDeux.", encoding="utf-8")
    with pytest.raises(InputError, match="unique id"):
        load_articles([tmp_path])
    with pytest.raises(InputError, match="no such file"):
        load_articles([tmp_path / "missing"])


def test_an_unquoted_valid_date_is_kept_as_text(tmp_path):
    (tmp_path / "d.md").write_text("---\ndate: 2025-06-24\n---\nTexte.", encoding="utf-8")
    assert load_articles([tmp_path / "d.md"])[0].date == "2025-06-24"


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(raw=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")),
                     st.builds(lambda fm, body: f"---\n{fm}\n---\n{body}", st.text(), st.text())))
@pytest.mark.parametrize("suffix", [".md", ".txt", ".jsonl", ".json", ".html"])
def test_loaders_fuzzed_give_articles_or_a_clear_error(tmp_path, suffix, raw):
    """Any text in any supported file: articles, or an InputError naming the file (never a traceback)."""
    path = tmp_path / f"fuzz{suffix}"
    path.write_text(raw, encoding="utf-8", errors="surrogatepass")
    try:
        articles = load_articles([path])
    except InputError as exc:
        assert str(exc).startswith(str(path)) or "fuzz" in str(exc), exc
    else:
        assert all(a.text.strip() and a.id for a in articles)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


@FUZZ
@given(record=st.dictionaries(st.sampled_from(["id", "title", "date", "url", "source", "language", "text", "x"]),
                              json_values, max_size=7))
def test_jsonl_records_fuzzed(tmp_path, record):
    path = tmp_path / "fuzz.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    try:
        load_articles([path])
    except InputError as exc:
        assert str(exc).startswith(f"{path}:1"), exc


@FUZZ
@given(data=json_values)
def test_squad_json_fuzzed(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({"data": data} if not isinstance(data, dict) else data), encoding="utf-8")
    try:
        load_articles([path])
    except InputError as exc:
        assert str(path) in str(exc), exc


def test_articles_over_the_size_limit_are_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:  # sparse: 50 MB that costs no disk
        handle.truncate(50 * 1024 * 1024)
    read = []
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: read.append(self) or "")
    with pytest.raises(InputError, match=r"big.txt: the file has 52,428,800 bytes.*RAG_MAX_ARTICLE_CHARS"):
        load_articles([big])
    assert read == [], "not read"


def test_the_article_limit_is_in_characters_and_configurable(tmp_path):
    (tmp_path / "a.md").write_text("Phrase. " * 300, encoding="utf-8")
    with pytest.raises(InputError, match=r"a.md: the article has 2,400 characters; the limit is 2,000"):
        load_articles([tmp_path / "a.md"], max_chars=2000)
    assert load_articles([tmp_path / "a.md"], max_chars=3000)


def test_json_lines_are_read_a_line_at_a_time_with_a_bounded_line(tmp_path):
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps({"id": "ok", "text": "Court."}) + "\n" + json.dumps({"text": "x" * 20_000}) + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"feed.jsonl:2: the article has 20,000 characters"):
        load_articles([path], max_chars=19_000)
    path.write_text(json.dumps({"text": "y" * 200_000}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"feed.jsonl:1: the line is longer than an article may be"):
        load_articles([path], max_chars=10_000)
