"""Feed documents and pages into articles: RSS and Atom parsed with feedparser, HTML reduced to text,
stable item ids, the text of a page (trafilatura) and schedule durations."""
from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from common.dates import iso_date
from common.errors import InputError
from index.loaders import slugify

if TYPE_CHECKING:
    from index.fetch import Page


FULL_TEXT_CHARS = 500  # an item's feed content shorter than this is a teaser: its page is fetched instead
MIN_EVERY = 1.0  # seconds: the shortest schedule accepted
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_every(value) -> float:
    """A schedule such as ``30s``, ``15m``, ``1h`` (or a number of seconds) in seconds; InputError otherwise."""
    match = _DURATION.fullmatch(str(value))
    if not match:
        raise InputError(f"{value!r} is not a duration; write a number and a unit, such as 30s, 15m or 1h")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if seconds < MIN_EVERY:
        raise InputError(f"{value!r} is too short; syncs may be {MIN_EVERY:.0f} s apart at least (e.g. 30s, 15m)")
    return seconds


# --- feed documents -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One entry of a feed, reduced to what an article needs."""

    key: str  # its guid (RSS) or id (Atom), else its link: what identifies it from one sync to the next
    link: str = ""
    title: str = ""
    published: str = ""  # YYYY-MM-DD, the publisher's local date
    updated: str = ""
    language: str = ""
    content: str = ""  # the text taken from the feed itself when ``full``
    full: bool = False  # the text comes from the feed (full text, or no page to fetch): no page is fetched
    fingerprint: str = ""  # hash of the entry as the feed gives it: when it changes, the article is rebuilt

    def stored(self) -> dict:
        """What feeds.json keeps of the entry: enough to revalidate its page when the feed answers 304."""
        return {"link": self.link, "title": self.title, "published": self.published, "updated": self.updated,
                "language": self.language, "full": self.full, "entry": self.fingerprint}

    @classmethod
    def from_stored(cls, key: str, saved: dict) -> Item:
        """The item as last seen (its feed answered 304); the text of a ``full`` one is not kept."""
        return cls(key, saved.get("link", ""), saved.get("title", ""), saved.get("published", ""),
                   saved.get("updated", ""), saved.get("language", ""), "", bool(saved.get("full")),
                   saved.get("entry", ""))


@dataclass(frozen=True)
class Feed:
    """A parsed feed: its title and language, its items, and entries that could not be read."""

    url: str
    title: str
    language: str
    items: tuple[Item, ...]
    problems: tuple[str, ...] = ()


def parse_feed(url: str, body: bytes, content_type: str = "", base: str = "") -> Feed:
    """The RSS or Atom feed in ``body`` (fetched from ``url``; relative links resolved against ``base``,
    where it was found). InputError when it is not a feed, with the feed's own address when the
    document is a page that names one."""
    import feedparser

    # Bytes, never a URL: feedparser would fetch a URL itself, around the fetcher's checks. (It reads no
    # external entities either: its SAX parser has feature_external_ges off.)
    parsed = feedparser.parse(body, response_headers={"content-type": content_type or "application/xml",
                                                      "content-location": base or url})
    if not parsed.get("version"):
        raise InputError(f"{url}: not an RSS or Atom feed ({content_type or 'no content type'})"
                         f"{_feed_hint(body, base or url)}")
    language = _language(parsed.feed.get("language"))
    items, problems = [], []
    for entry in parsed.entries:
        item = entry_item(entry, base or url, language)
        if item is None:
            title = value_text(entry.get("title"), "text/html")[:60]
            problems.append(f"an item with neither guid nor link ({title!r}) was skipped")
        else:
            items.append(item)
    unique = tuple(dict((i.key, i) for i in items).values())  # a guid listed twice is one item
    title = value_text(parsed.feed.get("title"), _type(parsed.feed, "title"))
    return Feed(url, title, language, unique, tuple(problems))


def _feed_hint(body: bytes, base: str) -> str:
    """Where the feed is, when ``body`` is a page that links to it (``<link rel=alternate type=…rss…>``)."""
    head = body[:200_000].decode("utf-8", "replace")
    for tag in re.findall(r"<link\b[^>]*>", head, re.IGNORECASE):
        if re.search(r"application/(rss|atom)\+xml", tag, re.IGNORECASE):
            href = re.search(r"href\s*=\s*[\"']([^\"']+)", tag, re.IGNORECASE)
            if href:
                return f"; the page names a feed: {urljoin(base, href.group(1))}"
    return "; give the address of the feed itself (the site's RSS or Atom link)"


def entry_item(entry, base: str, feed_language: str) -> Item | None:
    link = urljoin(base, entry.get("link") or "") if entry.get("link") else ""
    key = str(entry.get("id") or link).strip()
    if not key:
        return None
    content = max((value_text(c.get("value"), c.get("type")) for c in entry.get("content") or ()), key=len, default="")
    summary = value_text(entry.get("summary"), _type(entry, "summary"))
    published = _day(entry, "published")
    updated = _day(entry, "updated")
    text = content if len(content) >= FULL_TEXT_CHARS else ("" if link else content or summary)
    details = [entry.get("content") and entry.content[0], entry.get("summary_detail"), entry.get("title_detail")]
    language = next((_language(d.get("language")) for d in details if d and _language(d.get("language"))),
                    feed_language)
    fingerprint = hash_text("\x00".join((link, str(entry.get("title")), published, updated, language, content,
                                          summary)))
    return Item(key, link, value_text(entry.get("title"), _type(entry, "title")), published or updated,
                updated if updated != (published or updated) else "", language, text, bool(text) or not link,
                fingerprint)


def _type(node, name: str) -> str:
    return (node.get(f"{name}_detail") or {}).get("type", "text/html")


def _day(entry, name: str) -> str:
    """The entry's ``published``/``updated`` as the publisher's local date (feedparser's own parse is in
    UTC, which moves a story published at 00:30 in Paris to the day before)."""
    # dict.get: feedparser's own get maps a missing ``updated`` to ``published``, with a warning.
    raw = str(dict.get(entry, name) or "").strip()
    for parse in (email.utils.parsedate_to_datetime, dt.datetime.fromisoformat):
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return parse(raw).date().isoformat()
    parsed = dict.get(entry, f"{name}_parsed")
    return time.strftime("%Y-%m-%d", parsed) if parsed else ""


def _language(value) -> str:
    code = str(value or "").strip().lower()[:2]
    return code if re.fullmatch(r"[a-z]{2}", code) else ""


class _TextParser(HTMLParser):
    """HTML reduced to text: block elements become paragraph breaks, scripts and styles are dropped."""

    BLOCKS = {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr",
              "table", "section", "article", "figure", "figcaption", "hr", "header", "footer", "dd", "dt"}
    SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_text(markup: str) -> str:
    """The text of an HTML fragment (a summary, a feed's full text), paragraphs kept apart."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def value_text(value, kind: str | None) -> str:
    value = str(value or "")
    return html_text(value) if "html" in (kind or "text/html") else value.strip()


def page_text(page: Page) -> tuple[str, dict]:
    """The main text of an article page (menus, footers dropped; trafilatura) and what it says of its
    title, date and language."""
    kind = page.content_type.split(";")[0].strip().lower()
    if kind and "html" not in kind and kind not in ("text/plain", "application/xml", "text/xml"):
        raise InputError(f"{page.url}: not an HTML page ({kind}); only pages of articles are read")
    import trafilatura

    doc = trafilatura.bare_extraction(page.body, url=page.url, with_metadata=True, include_comments=False,
                                      favor_precision=True)
    text = getattr(doc, "text", None) if doc is not None else None
    if not text:
        raise InputError(f"{page.url}: no article text found in the page")
    date = ""
    with contextlib.suppress(InputError):
        date = iso_date(doc.date, page.url)
    return text, {"title": doc.title or "", "date": date, "language": _language(doc.language)}


def item_id(feed_url: str, key: str) -> str:
    """A stable, id-safe article id for an item: a slug of its guid (or link) and a short hash. The hash is
    of the guid alone when it is a URL or URN (unique by construction: an item in two feeds of one site is
    one article), else of the feed's address and the guid (so guid "123" in two feeds cannot collide)."""
    scoped = key if re.match(r"(https?|tag|urn):", key, re.IGNORECASE) else f"{feed_url}\x00{key}"
    digest = hashlib.sha1(scoped.encode("utf-8")).hexdigest()[:10]
    tail = re.sub(r"^[a-z][a-z0-9+.-]*:(//[^/]*)?", "", key, flags=re.IGNORECASE)  # the scheme and host say little
    slug = slugify(tail, 1000)[-60:].strip("-") or "item"
    return f"{slug}-{digest}"


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def http_day(value: str) -> str:
    """The date of an HTTP date header (``Last-Modified``), "" when absent or unreadable."""
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return email.utils.parsedate_to_datetime(value).date().isoformat() if value else ""
    return ""


# --- reports --------------------------------------------------------------------------------------------
