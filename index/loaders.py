"""Load articles from Markdown (front matter), plain text, HTML, JSON Lines and SQuAD JSON."""
from __future__ import annotations

import functools
import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from common.dates import iso_date
from common.errors import InputError
from common.injection import normalise
from common.text import detect_language
from index.squad import read_squad
from index.types import Article

SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".jsonl", ".json")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.DOTALL)
_FIELDS = ("id", "title", "date", "url", "source", "language", "updated")
MAX_ARTICLE_CHARS = 1_000_000  # RAG_MAX_ARTICLE_CHARS; a long feature is ~60,000
_BYTES_PER_CHAR = 8  # a single-article file (HTML: markup around the text) is refused unread past this many
SQUAD_MAX_BYTES = 256 * 1024 * 1024


def slugify(text: str, max_len: int = 80) -> str:
    """An id-safe slug: ASCII letters, digits and dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "article"


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files to load: each path itself, or the supported files below a folder, sorted."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise InputError(f"{path}: no such file or folder; give paths to articles or folders of them")


def load_articles(paths: Iterable[str | Path], max_chars: int = MAX_ARTICLE_CHARS) -> list[Article]:
    """Every article found under ``paths``; ids must be unique across them."""
    articles: dict[str, Article] = {}
    for path in iter_files(paths):
        for article in load_file(path.resolve(), max_chars):
            if article.id in articles:
                raise InputError(
                    f"{path}: article id {article.id!r} is also used by {articles[article.id].path}; "
                    "give each article a unique id (front matter `id:` or the record's `id`)"
                )
            articles[article.id] = article
    return list(articles.values())


def load_file(path: Path, max_chars: int = MAX_ARTICLE_CHARS) -> list[Article]:
    """The articles in one file, chosen by its suffix. A file too large for what it can hold is refused
    before it is read; JSON Lines are read a line at a time."""
    loaders = {".md": _load_markdown, ".markdown": _load_markdown, ".txt": _load_text,
               ".html": _load_html, ".htm": _load_html, ".json": _load_squad}
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _load_jsonl(path, max_chars)
    loader = loaders.get(suffix)
    if loader is None:
        raise InputError(f"{path}: unsupported file type; supported: {', '.join(SUFFIXES)}")
    limit = SQUAD_MAX_BYTES if suffix == ".json" else _BYTES_PER_CHAR * max_chars
    size = path.stat().st_size
    if size > limit:
        raise InputError(f"{path}: the file has {size:,} bytes, more than an article may have ({limit:,} bytes "
                         f"for {suffix} files; RAG_MAX_ARTICLE_CHARS={max_chars:,}): split it, or raise the limit")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc}); convert it to UTF-8 first") from exc
    return [within_limit(a, max_chars) for a in loader(path, raw)]


def within_limit(article: Article, max_chars: int, where: str = "") -> Article:
    """``article``, or an InputError naming ``where`` when its text is over ``max_chars`` characters."""
    if len(article.text) > max_chars:
        raise InputError(f"{where or article.path or article.id}: the article has {len(article.text):,} characters; "
                         f"the limit is {max_chars:,} (RAG_MAX_ARTICLE_CHARS): split it, or raise the limit")
    return article


def make_article(fields: dict, text: str, path: Path | str = "", default_id: str = "") -> Article:
    """An Article from loose fields, filling id, title and language when missing; checks the text."""
    text = text.strip("\n")
    if not normalise(text).strip():
        raise InputError(f"{path or fields.get('id') or 'article'}: the article has no text (only spaces or "
                         "invisible characters); give it the article's text")
    for name, value in fields.items():
        if name in _FIELDS and isinstance(value, (dict, list, tuple, set)):
            raise InputError(f"{path or 'article'}: field `{name}` must be text, not a "
                             f"{'list' if not isinstance(value, dict) else 'mapping'}; write `{name}: …` on one line")
    title = str(fields.get("title") or "").strip() or _first_line(text)
    article_id = str(fields.get("id") or "").strip() or default_id or slugify(title)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}", article_id):
        raise InputError(f"{path}: invalid article id {article_id!r}; use letters, digits, '.', '_', ':' or '-'")
    return Article(
        id=article_id,
        title=title,
        text=text,
        date=_date(fields.get("date"), path),
        url=str(fields.get("url") or ""),
        source=str(fields.get("source") or ""),
        language=str(fields.get("language") or "").lower() or detect_language(text),
        path=str(path),
        updated=iso_date(fields.get("updated"), f"{path or 'article'}: field `updated`"),
    )


def _date(value, path) -> str:
    return iso_date(value, f"{path or 'article'}: field `date`")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0].lstrip("# ").strip()
    return line if len(line) <= 120 else line[:117].rsplit(" ", 1)[0] + "…"


@functools.cache
def _front_matter_loader():
    """YAML's safe loader, except that dates stay text (``iso_date`` checks them with the file's name;
    PyYAML's own conversion raises a bare ValueError on ``date: 2025-13-45``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return Loader


def _load_markdown(path: Path, raw: str) -> list[Article]:
    import yaml


    fields, body = {}, raw
    match = _FRONT_MATTER.match(raw)
    if match:
        try:
            fields = yaml.load(match.group(1), Loader=_front_matter_loader()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: front matter is not valid YAML ({exc})") from exc
        if not isinstance(fields, dict):
            raise InputError(f"{path}: front matter must be `key: value` lines")
        body = raw[match.end():]
    return [make_article(fields, body, path, default_id=slugify(path.stem))]


def _load_text(path: Path, raw: str) -> list[Article]:
    return [make_article({}, raw, path, default_id=slugify(path.stem))]


def _load_html(path: Path, raw: str) -> list[Article]:
    import trafilatura

    doc = trafilatura.bare_extraction(raw, with_metadata=True, include_comments=False, favor_precision=True)
    text = getattr(doc, "text", None) if doc is not None else None
    if not text:
        raise InputError(f"{path}: no article text found in the HTML page")
    fields = {"title": doc.title, "date": doc.date, "url": doc.url, "source": doc.sitename,
              "language": (doc.language or "")[:2]}
    return [make_article(fields, text, path, default_id=slugify(path.stem))]


def _load_jsonl(path: Path, max_chars: int) -> list[Article]:
    articles, limit = [], _BYTES_PER_CHAR * max_chars + 4096
    with open(path, encoding="utf-8") as handle:
        for lineno in itertools.count(1):
            try:
                line = handle.readline(limit)
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not UTF-8 text ({exc}); convert it to UTF-8 first") from exc
            if not line:
                return articles
            if len(line) >= limit and not line.endswith("\n"):
                raise InputError(f"{path}:{lineno}: the line is longer than an article may be "
                                 f"(RAG_MAX_ARTICLE_CHARS={max_chars:,}): split it, or raise the limit")
            if line.strip():
                articles.append(within_limit(_jsonl_record(path, lineno, line), max_chars, f"{path}:{lineno}"))


def _jsonl_record(path: Path, lineno: int, line: str) -> Article:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise InputError(f"{path}:{lineno}: each line must be an object with a string `text`")
    fields = {k: record.get(k) for k in _FIELDS}
    return make_article(fields, record["text"], f"{path}:{lineno}")


def _load_squad(path: Path, raw: str) -> list[Article]:
    return [make_article({"title": entry.title}, entry.text, path) for entry in read_squad(path, raw)]
