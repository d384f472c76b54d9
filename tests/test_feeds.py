"""Feeds (index/feeds.py, index/fetch.py): a real news site on 127.0.0.1 — an RSS feed of 50 items that
carry only a summary, their 50 HTML pages, conditional GETs answered with 304 — synced into an index
built with the hash embedder. The site is allowed through the allow-list, as RAG_FETCH_ALLOW would."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common.errors import InputError
from index.chunker import Chunker
from index.embedder import FakeEmbedder
from index.feeds import STATE_FILE, StoreWriter, item_id, load_state, parse_every, parse_feed, sync_feeds
from index.fetch import AllowList, Fetcher
from index.lexical import SegmentedLexical
from index.store import IndexStore
from index.types import Article

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("conseil municipal budget tramway élection maire vote région hôpital grève cheminots salaire entreprise "
         "usine emploi climat sécheresse récolte agriculteurs marché prix énergie électricité réseau chantier "
         "logement loyer quartier école enseignants rentrée musée exposition festival équipe match saison").split()
SITE = "La Gazette de Test"
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


def paragraphs(i: int, version: int = 0) -> list[str]:
    rng = random.Random(i)
    out = [f"{' '.join(rng.choices(WORDS, k=14)).capitalize()} selon le dossier {i}." for _ in range(8)]
    if version:
        out[-1] = f"Correction {version} : le chiffre révisé par la rédaction est désormais publié, motnouveau{i}."
    return out


def page_html(i: int, version: int = 0) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs(i, version))
    return (f"<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>Dépêche {i}</title>"
            f"<link rel='alternate' type='application/rss+xml' href='/feed.xml'></head><body>"
            f"<nav><a href='/'>Accueil</a> <a href='/une'>À la une</a></nav><article><h1>Dépêche {i}</h1>{body}"
            f"</article><footer>Mentions légales · Gérer les cookies</footer></body></html>")


def http_date(day: str) -> str:
    return format_datetime(parsedate_to_datetime(f"{day} 08:00:00 +0000"), usegmt=True)


class NewsSite:
    """A news site: ``/feed.xml`` (RSS, summaries only), ``/atom.xml`` (Atom, full text), ``/articles/N.html``,
    and a few special paths. ETag and Last-Modified on everything; 304 to a matching If-None-Match or,
    without one, an If-Modified-Since not older than the document. Requests are counted per path."""

    def __init__(self, n: int = 50):
        self.items = list(range(n))
        self.versions = dict.fromkeys(self.items, 0)
        self.modified = {i: "Wed, 05 Mar 2025 08:00:00 GMT" for i in self.items}
        self.routes = {}  # path -> function(handler) for the special paths
        self.requests, self.bodies, self.statuses = Counter(), Counter(), Counter()
        self.log: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                site.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        with self.lock:
            self.requests[path] += 1
            self.log.append((time.monotonic(), path))
        if path in self.routes:
            return self.routes[path](h)
        if path == "/feed.xml":
            return self.send(h, self.rss(), "application/rss+xml; charset=utf-8", "Wed, 05 Mar 2025 09:00:00 GMT")
        if path == "/atom.xml":
            return self.send(h, self.atom(), "application/atom+xml", "Wed, 05 Mar 2025 09:00:00 GMT")
        match = re.fullmatch(r"/articles/(\d+)\.html", path)
        if match and int(match.group(1)) in self.versions:
            i = int(match.group(1))
            return self.send(h, page_html(i, self.versions[i]), "text/html; charset=utf-8", self.modified[i])
        self.send_status(h, 404)

    def send(self, h, text: str, kind: str, modified: str) -> None:
        body = text.encode("utf-8")
        etag = f'"{hashlib.sha1(body).hexdigest()[:16]}"'
        since = h.headers.get("if-modified-since")
        fresh = (h.headers["if-none-match"] == etag if h.headers.get("if-none-match")
                 else bool(since) and parsedate_to_datetime(since) >= parsedate_to_datetime(modified))
        if fresh:
            return self.send_status(h, 304, {"ETag": etag, "Last-Modified": modified})
        h.send_response(200)
        for name, value in {"Content-Type": kind, "Content-Length": str(len(body)), "ETag": etag,
                            "Last-Modified": modified}.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
        with self.lock:
            self.bodies[urlsplit(h.path).path] += 1
            self.statuses[200] += 1

    def send_status(self, h, status: int, headers: dict | None = None, body: bytes = b"") -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        with self.lock:
            self.statuses[status] += 1

    def rss(self) -> str:
        items = "".join(
            f"<item><title>Dépêche {i} : le &lt;b&gt;conseil&lt;/b&gt; vote</title>"
            f"<link>{self.url(f'/articles/{i}.html')}</link>"
            f"<guid isPermaLink='false'>gazette-{i}</guid><pubDate>Wed, 05 Mar 2025 {i % 24:02d}:30:00 +0100"
            f"</pubDate><description>&lt;p&gt;Résumé &lt;em&gt;court&lt;/em&gt; de la dépêche {i}.&lt;/p&gt;"
            f"</description></item>" for i in self.items)
        return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{SITE}</title>"
                f"<link>{self.url('/')}</link><language>fr-FR</language>{items}</channel></rss>")

    def atom(self) -> str:
        entries = "".join(
            f"<entry><id>tag:wire.test,2025:{i}</id><title>Wire story {i}</title>"
            f"<link href='{self.url(f'/wire/{i}.html')}'/><published>2025-03-04T10:00:00Z</published>"
            f"<updated>{'2025-03-20T10:00:00Z' if i % 2 else '2025-03-04T18:00:00Z'}</updated>"
            f"<summary>Short summary {i}.</summary><content type='html'>"
            + "".join(f"&lt;p&gt;{p}&lt;/p&gt;" for p in paragraphs(100 + i)) + "</content></entry>"
            for i in self.items)
        return ("<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom' xml:lang='en'>"
                f"<title>Wire Service</title><id>urn:wire</id><updated>2025-03-20T10:00:00Z</updated>{entries}</feed>")

    def page_bodies(self) -> int:
        return sum(n for path, n in self.bodies.items() if path.startswith("/articles/"))

    def __enter__(self) -> NewsSite:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class CountingEmbedder(FakeEmbedder):
    """The hash embedder, counting the passages it embedded."""

    def __init__(self, dim: int = 32):
        super().__init__(dim)
        self.calls = 0

    def embed(self, texts, kind="passage"):
        self.calls += len(texts) if kind == "passage" else 0
        return super().embed(texts, kind)


class FailingWriter(StoreWriter):
    """A writer whose index write fails, as a full disk or a killed process would make it."""

    def write(self, articles, delete):
        raise RuntimeError("disk full")


@pytest.fixture
def site():
    with NewsSite() as s:
        yield s


@pytest.fixture
def env(tmp_path):
    store = IndexStore(tmp_path / "idx")
    embedder = CountingEmbedder()
    return store, StoreWriter(store, embedder, Chunker(target_tokens=64, overlap_tokens=8)), embedder


def fetcher(**options) -> Fetcher:
    return Fetcher(**{"allow": ["127.0.0.1"], "interval": 0, "backoff": 0, **options})


def sync(env, urls, writer=None, **options):
    store, default, _ = env
    return sync_feeds(store.root, urls, fetcher(), writer or default, **options)


def gazette_id(site: NewsSite, i: int) -> str:
    return item_id(site.url("/feed.xml"), f"gazette-{i}")


# --- syncing --------------------------------------------------------------------------------------------


def test_the_first_sync_indexes_every_item_with_its_pages_main_text(site, env):
    store, _, _ = env
    report = sync(env, [site.url("/feed.xml")])
    feed = report.feeds[0]
    assert (len(feed.new), feed.fetched, feed.not_modified, feed.failed, feed.title) == (50, 51, 0, [], SITE)
    data = store.load()
    assert len(data.articles) == 50 and all(ID.fullmatch(a.id) for a in data.articles)
    record = data.article_by_id[gazette_id(site, 7)]
    assert all(p in record.text for p in paragraphs(7)), "the page's main text, not the summary"
    assert "Résumé" not in record.text and "Mentions légales" not in record.text and "Accueil" not in record.text
    assert record.title == "Dépêche 7 : le conseil vote", "HTML in the title reduced to text"
    assert (record.date, record.updated, record.source, record.language) == ("2025-03-05", "", SITE, "fr")
    assert record.url == site.url("/articles/7.html") and record.path == ""
    # 00:30 in Paris is the day before in UTC: the publisher's date is kept.
    assert data.article_by_id[gazette_id(site, 0)].date == "2025-03-05"
    state = load_state(store.root)["feeds"][site.url("/feed.xml")]
    assert len(state["items"]) == 50 and state["etag"] and all(s["etag"] for s in state["items"].values())


def test_a_second_sync_with_nothing_changed_gets_304s_and_writes_no_version(site, env):
    store, _, embedder = env
    sync(env, [site.url("/feed.xml")])
    version, bodies, embedded = store.current_path(), site.page_bodies(), embedder.calls
    report = sync(env, [site.url("/feed.xml")])
    feed = report.feeds[0]
    assert (feed.fetched, feed.not_modified, feed.new, feed.changed) == (0, 51, [], [])
    assert site.page_bodies() == bodies and site.statuses[304] == 51, "every page revalidated, none sent again"
    assert report.update is None and store.current_path() == version and embedder.calls == embedded


def test_an_item_with_the_url_of_an_indexed_article_replaces_it_and_is_not_fetched_again(site, env):
    store, writer, _ = env
    link = site.url("/articles/3.html")
    writer.write([Article("from-a-file", "Ancienne version", "Un texte plus ancien de l'article trois.",
                          "2025-03-01", url=link, language="fr")], [])
    report = sync(env, [site.url("/feed.xml")])
    assert report.update.same_url == {gazette_id(site, 3): "from-a-file"}
    data = store.load()
    assert gazette_id(site, 3) not in data.article_by_id and "plus ancien" not in data.article_by_id["from-a-file"].text
    assert len(data.article_by_id["from-a-file"].history) == 1
    version, bodies = store.current_path(), site.page_bodies()
    report = sync(env, [site.url("/feed.xml")])
    assert report.update is None and store.current_path() == version and site.page_bodies() == bodies


def test_a_changed_page_replaces_its_article_and_only_its_chunks_are_embedded(site, env):
    store, _, embedder = env
    sync(env, [site.url("/feed.xml")])
    before, embedded = store.load(), embedder.calls
    old_last = paragraphs(7)[-1]
    site.versions[7], site.modified[7] = 1, "Wed, 12 Mar 2025 09:00:00 GMT"
    report = sync(env, [site.url("/feed.xml")])
    feed, changed = report.feeds[0], gazette_id(site, 7)
    assert (feed.changed, feed.new, feed.fetched, feed.not_modified) == ([changed], [], 1, 50)
    data = store.load()
    record = data.article_by_id[changed]
    assert "motnouveau7" in record.text and old_last not in record.text
    assert record.updated == "2025-03-12" and record.date == "2025-03-05", "the date of the corrected version"
    assert 0 < embedder.calls - embedded < record.n_chunks, "only the chunks whose text changed"
    lexical = SegmentedLexical(data)
    top = int(lexical.scores("motnouveau7").argmax())
    assert data.chunks[top].article_id == changed
    assert not any(old_last in c.text for c in data.chunks), "the old text is gone from the index"
    assert len(data.articles) == len(before.articles) == 50


def test_a_removed_item_is_kept_and_dropped_only_when_asked(site, env):
    store, _, _ = env
    url, gone = site.url("/feed.xml"), gazette_id(site, 3)
    sync(env, [url])
    site.items.remove(3)
    report = sync(env, [url])
    assert report.feeds[0].removed == [gone] and report.feeds[0].dropped == []
    assert gone in store.load().article_by_id and report.update is None, "kept: feeds list only the latest items"
    report = sync(env, [url], drop_removed=True)  # the feed answers 304 now: the kept id is remembered
    assert report.feeds[0].dropped == [gone] and report.update.deleted == [gone]
    assert gone not in store.load().article_by_id and len(store.load().articles) == 49
    assert load_state(store.root)["feeds"][url]["kept"] == []


def test_an_atom_feed_with_full_text_needs_no_page(site, env):
    store, _, _ = env
    report = sync(env, [site.url("/atom.xml")])
    feed = report.feeds[0]
    assert (len(feed.new), feed.fetched, feed.title) == (50, 1, "Wire Service")
    assert not any(p.startswith("/wire/") for p in site.requests), "the feed carries the text"
    data = store.load()
    odd = data.article_by_id[item_id(site.url("/atom.xml"), "tag:wire.test,2025:1")]
    even = data.article_by_id[item_id(site.url("/atom.xml"), "tag:wire.test,2025:2")]
    assert odd.text == "\n\n".join(paragraphs(101)) and odd.language == "en" and odd.source == "Wire Service"
    assert (odd.date, odd.updated) == ("2025-03-04", "2025-03-20"), "updated: a later day than published"
    assert (even.date, even.updated) == ("2025-03-04", ""), "updated the same day: no other version date"
    assert sync(env, [site.url("/atom.xml")]).update is None


def test_a_failing_page_skips_its_item_and_it_is_tried_again(site, env):
    store, _, _ = env
    site.routes["/articles/9.html"] = lambda h: site.send_status(h, 500)
    report = sync(env, [site.url("/feed.xml")])
    feed = report.feeds[0]
    assert len(feed.new) == 49 and [f["item"] for f in feed.failed] == [site.url("/articles/9.html")]
    assert "answered 500 (after 3 attempts)" in feed.failed[0]["error"]
    del site.routes["/articles/9.html"]
    report = sync(env, [site.url("/feed.xml")])  # the feed answers 304; item 9 is fetched anyway
    assert report.feeds[0].new == [gazette_id(site, 9)] and len(store.load().articles) == 50


def test_a_feed_that_fails_is_reported_and_the_others_go_on(site, env):
    store, _, _ = env
    urls = ["ftp://example.org/feed.xml", site.url("/articles/1.html"), site.url("/missing.xml"),
            site.url("/feed.xml")]
    report = sync(env, urls)
    errors = [f.error for f in report.feeds]
    assert errors[0] == ("ftp://example.org/feed.xml: only http and https URLs with a host can be fetched; give "
                         "e.g. https://example.org/feed.xml")
    assert errors[1].startswith(f"{urls[1]}: not an RSS or Atom feed (text/html")
    assert f"the page names a feed: {site.url('/feed.xml')}" in errors[1]
    assert errors[2] == f"{urls[2]}: the server answered 404; the address may have moved; check it"
    assert errors[3] == "" and len(report.feeds[3].new) == 50 and not report.ok
    assert set(load_state(store.root)["feeds"]) == {urls[3]}, "a failed feed leaves no state"


def test_the_state_survives_a_failed_index_write(site, env):
    store, writer, _ = env
    url = site.url("/feed.xml")
    with pytest.raises(RuntimeError):  # the very first sync fails: nothing recorded, nothing skipped later
        sync(env, [url], writer=FailingWriter(store, writer._embedder, writer.chunker))
    assert not (store.root / STATE_FILE).exists()
    assert len(sync(env, [url]).feeds[0].new) == 50
    saved = (store.root / STATE_FILE).read_bytes()
    site.versions[5] = 1
    with pytest.raises(RuntimeError):
        sync(env, [url], writer=FailingWriter(store, writer._embedder, writer.chunker))
    assert (store.root / STATE_FILE).read_bytes() == saved, "the state is written only after the index"
    report = sync(env, [url])
    assert report.feeds[0].changed == [gazette_id(site, 5)], "the next sync fetches the change again"
    assert "motnouveau5" in store.load().article_by_id[gazette_id(site, 5)].text


def test_two_syncs_at_once_take_turns(site, env):
    store, _, _ = env
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(sync(env, [site.url("/feed.xml")])))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(len(r.feeds[0].new) for r in reports) == [0, 50]
    assert len(store.load().articles) == 50
    assert len(load_state(store.root)["feeds"][site.url("/feed.xml")]["items"]) == 50
    assert sync_feeds(store.root, [], fetcher(), env[1], wait=False) is not None


def test_rss_full_text_teasers_and_items_without_a_link():
    long = "".join(f"&lt;p&gt;{p}&lt;/p&gt;" for p in paragraphs(1))
    rss = ("<?xml version='1.0'?><rss version='2.0' xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
           "<channel><title>Le &lt;i&gt;Quotidien&lt;/i&gt;</title><language>fr</language>"
           f"<item><guid>https://q.example/a/1</guid><link>/a/1</link><title>Un</title>"
           f"<content:encoded>{long}&lt;script&gt;track()&lt;/script&gt;</content:encoded></item>"
           "<item><guid>https://q.example/a/2</guid><link>/a/2</link><title>Deux</title>"
           "<content:encoded>&lt;p&gt;Une accroche.&lt;/p&gt;</content:encoded></item>"
           "<item><guid isPermaLink='false'>brief-3</guid><title>Trois</title>"
           "<description>Brève &amp;lt;sans&amp;gt; lien : &lt;b&gt;le texte&lt;/b&gt;&lt;br&gt;est ici."
           "</description></item>"
           "<item><title>Ni guid ni lien</title></item></channel></rss>")
    feed = parse_feed("https://q.example/rss", rss.encode(), "application/rss+xml", base="https://q.example/feed/")
    full, teaser, brief = feed.items
    assert feed.title == "Le Quotidien" and feed.language == "fr" and len(feed.problems) == 1
    assert full.full and full.content == "\n\n".join(paragraphs(1)) and full.link == "https://q.example/a/1"
    assert not teaser.full and teaser.content == "", "a teaser: the page is fetched"
    assert brief.full and brief.content == "Brève <sans> lien : le texte\nest ici." and brief.link == ""


def test_item_ids_are_stable_safe_and_do_not_collide():
    a, b = "https://one.example/feed.xml", "https://two.example/rss"
    assert item_id(a, "123") != item_id(b, "123"), "a bare guid is scoped by its feed"
    assert item_id(a, "https://one.example/2025/03/lyon-velos") == item_id(b, "https://one.example/2025/03/lyon-velos")
    assert item_id(a, "https://one.example/2025/03/lyon-velos").startswith("2025-03-lyon-velos-")
    for key in ("tag:x,2025:ünïcødé/\u200b", "???", "a" * 500, "urn:uuid:1234"):
        assert ID.fullmatch(item_id(a, key)) and item_id(a, key) == item_id(a, key)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("1h", 3600), ("2", 2), (" 1.5 h ", 5400)])
def test_schedules(text, seconds):
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["15x", "", "m", "0s", "-1m", "1 hour"])
def test_bad_schedules_are_refused_clearly(text):
    with pytest.raises(InputError, match="duration|too short"):
        parse_every(text)


# --- the fetcher: addresses ------------------------------------------------------------------------------


def no_resolver(host):
    raise AssertionError(f"{host} should not have been resolved")


@pytest.mark.parametrize("url, refused, kind", [
    ("http://10.1.2.3/feed.xml", "10.1.2.3", "a private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local"),
    ("http://[::1]:{port}/feed.xml", "::1", "a loopback"),
    ("http://127.0.0.1:{port}/feed.xml", "127.0.0.1", "a loopback"),
    ("http://0.0.0.0:{port}/feed.xml", "0.0.0.0", "an unspecified"),
    ("http://[::ffff:127.0.0.1]:{port}/", "::ffff:127.0.0.1", "a loopback"),
    ("http://[fe80::1]/", "fe80::1", "a link-local"),
    ("http://[fd12::1]/", "fd12::1", "a private"),
    ("http://224.0.0.251/", "224.0.0.251", "a multicast"),
    ("http://240.0.0.1/", "240.0.0.1", "a reserved"),
    ("http://100.64.0.1/", "100.64.0.1", "a non-public"),
], ids=lambda v: v if isinstance(v, str) and "://" in v else None)
def test_non_public_addresses_are_refused_before_any_connection(site, url, refused, kind):
    url = url.format(port=site.port)
    with Fetcher(resolve=no_resolver) as f, pytest.raises(InputError) as caught:
        f.get(url)
    assert str(caught.value) == (f"{url}: {refused} is {kind} address; feeds may only be fetched from public "
                                 f"addresses unless RAG_FETCH_ALLOW names it (e.g. RAG_FETCH_ALLOW={refused})")
    assert f.connections == 0 and not site.requests


def test_a_host_name_is_checked_at_every_address_it_resolves_to(site):
    url = f"http://news.example:{site.port}/feed.xml"
    with Fetcher(resolve=lambda host: ["127.0.0.1"]) as f, pytest.raises(InputError) as caught:
        f.get(url)
    assert str(caught.value) == (f"{url}: news.example resolves to 127.0.0.1, a loopback address; feeds may only "
                                 "be fetched from public addresses unless RAG_FETCH_ALLOW names it "
                                 "(e.g. RAG_FETCH_ALLOW=news.example)")
    with Fetcher(resolve=lambda host: ["93.184.216.34", "10.0.0.7"]) as f, pytest.raises(InputError, match="10.0.0.7"):
        f.get(url)
    with Fetcher(interval=0) as f, pytest.raises(InputError, match="localhost resolves to .*a loopback address"):
        f.get(f"http://localhost:{site.port}/feed.xml")  # the system's resolver
    assert f.connections == 0 and not site.requests


@pytest.mark.parametrize("target", ["http://10.1.2.3/feed.xml", "http://169.254.169.254/", "http://[::1]:{port}/"])
def test_a_redirect_to_a_private_address_is_refused(site, target):
    target = target.format(port=site.port)
    site.routes["/go"] = lambda h: site.send_status(h, 302, {"Location": target})
    with fetcher() as f, pytest.raises(InputError) as caught:
        f.get(site.url("/go"))
    assert str(caught.value).startswith(f"{site.url('/go')} (redirected to {target}): ")
    assert "address; feeds may only be fetched from public addresses unless RAG_FETCH_ALLOW" in str(caught.value)
    assert f.connections == 1 and site.requests["/go"] == 1, "only the allowed host was connected to"


def test_redirects_are_followed_and_bounded(site):
    site.routes["/moved"] = lambda h: site.send_status(h, 301, {"Location": "/feed.xml"})
    site.routes["/loop"] = lambda h: site.send_status(h, 302, {"Location": "/loop"})
    with fetcher() as f:
        page = f.get(site.url("/moved"))
        assert page.status == 200 and page.url == site.url("/feed.xml") and b"<rss" in page.body
        with pytest.raises(InputError, match="more than 5 redirects"):
            f.get(site.url("/loop"))


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(site):
    """DNS rebinding: the name is resolved once, checked, and connected to at that very address."""
    lookups = []

    def rebinding(host):  # public when checked, loopback for whoever asks next
        lookups.append(host)
        return ["93.184.216.34"] if len(lookups) == 1 else ["127.0.0.1"]

    with Fetcher(resolve=rebinding, retries=0, timeout=0.5) as f, pytest.raises(InputError):
        f.get(f"http://rebind.example:{site.port}/feed.xml")
    assert lookups == ["rebind.example"] and not site.requests, "127.0.0.1 was never connected to"
    # A name only our resolver knows reaches the site: the client connects to the checked address itself.
    with Fetcher(allow=["news.example"], resolve=lambda host: ["127.0.0.1"], interval=0) as f:
        assert f.get(f"http://news.example:{site.port}/feed.xml").status == 200 and f.connections == 1


@pytest.mark.parametrize("entries, allowed", [
    (["127.0.0.1"], True), (["127.0.0.0/8"], True), (["127.0.0.1:{port}"], True), (["127.0.0.1:1"], False),
    (["10.0.0.0/8", "::1"], False), ([" 127.0.0.1 ", ""], True),
])
def test_the_allow_list(site, entries, allowed):
    f = Fetcher(allow=[e.format(port=site.port) for e in entries], interval=0)
    if allowed:
        assert f.get(site.url("/feed.xml")).status == 200
    else:
        with pytest.raises(InputError, match="is a loopback address"):
            f.get(site.url("/feed.xml"))


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "host name", "feeds.internal:99999", "a:b:c:d", "x/y"])
def test_a_bad_allow_list_entry_is_refused_clearly(entry):
    with pytest.raises(InputError, match="is not a host name, host:port, IP address or CIDR range"):
        AllowList([entry])


@pytest.mark.parametrize("url", ["ftp://example.org/feed.xml", "file:///etc/passwd", "not a url", "http:///feed",
                                 "javascript:alert(1)"])
def test_only_http_and_https_urls_are_fetched(url):
    with Fetcher(resolve=no_resolver) as f, pytest.raises(InputError, match="only http and https URLs"):
        f.get(url)


# --- the fetcher: limits, retries, politeness ----------------------------------------------------------


def test_a_body_over_the_size_cap_is_refused_with_the_url_and_the_limit(site):
    def big(h, declared: bool):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        if declared:
            h.send_header("Content-Length", str(300_000))
        h.end_headers()
        for _ in range(30):
            try:
                h.wfile.write(b"x" * 10_000)
            except OSError:  # the client stopped reading: what the cap is for
                return

    site.routes["/big"] = lambda h: big(h, True)
    site.routes["/endless"] = lambda h: big(h, False)
    with fetcher(max_bytes=100_000) as f:
        for path in ("/big", "/endless"):
            with pytest.raises(InputError) as caught:
                f.get(site.url(path))
            assert str(caught.value).startswith(f"{site.url(path)}: the response is larger than the limit of "
                                                "100,000 bytes (RAG_FETCH_MAX_BYTES")
        assert f.get(site.url("/feed.xml")).status == 200


def test_a_500_then_a_200_is_retried(site):
    answers = iter([500, 503, 429])

    def flaky(h):
        status = next(answers, 200)
        if status == 200:
            site.send(h, "<p>ok</p>", "text/html", "Wed, 05 Mar 2025 08:00:00 GMT")
        else:
            site.send_status(h, status, {"Retry-After": "0"} if status == 429 else {})

    site.routes["/flaky"] = flaky
    with fetcher(retries=3) as f:
        assert f.get(site.url("/flaky")).body == b"<p>ok</p>" and site.requests["/flaky"] == 4
    answers = iter([500] * 10)
    with fetcher(retries=2) as f, pytest.raises(InputError, match=r"answered 500 \(after 3 attempts\); try again"):
        f.get(site.url("/flaky"))
    assert site.requests["/flaky"] == 7, "bounded: 1 + 2 retries"


def test_a_refused_connection_is_retried_then_reported(site):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with fetcher(retries=2) as f, pytest.raises(InputError, match=r"connection failed .* \(after 3 attempts\)"):
        f.get(f"http://127.0.0.1:{port}/feed.xml")
    assert f.connections == 3


def test_requests_to_one_host_keep_the_minimum_interval(site):
    with Fetcher(allow=["127.0.0.1", "other.example"], interval=0.25, resolve=lambda h: ["127.0.0.1"]) as f:
        started = time.monotonic()
        for i in range(4):
            f.get(site.url(f"/articles/{i}.html"))
        elapsed = time.monotonic() - started
        f.get(f"http://other.example:{site.port}/articles/9.html")  # another host: no wait
        other = time.monotonic() - started - elapsed
    times = [t for t, path in site.log]
    gaps = [b - a for a, b in zip(times[:4], times[1:4])]
    assert min(gaps) >= 0.24 and elapsed >= 0.74, f"gaps {gaps}"
    assert other < 0.2


def test_conditional_requests_send_the_validators(site):
    with fetcher() as f:
        first = f.get(site.url("/articles/1.html"))
        again = f.get(site.url("/articles/1.html"), etag=first.etag)
        since = f.get(site.url("/articles/1.html"), last_modified=first.last_modified)
    assert first.status == 200 and first.etag and first.last_modified == "Wed, 05 Mar 2025 08:00:00 GMT"
    assert again.not_modified and since.not_modified and again.body == b"" and again.etag == first.etag


# --- the command line and the server ---------------------------------------------------------------------


def test_a_server_syncs_its_feeds_in_the_background(site, tmp_path, caplog):
    from rag.http.app import create_app
    from tests.fakes import fake_pipeline
    from tests.live_server import live_server

    seed = fake_pipeline(tmp_path / "index", feeds=[site.url("/feed.xml"), "http://10.9.9.9/feed.xml"],
                         fetch_allow=["127.0.0.1"], fetch_interval=0, feed_every=3600)
    app = create_app(lambda: seed, settings=seed.settings)
    with caplog.at_level("WARNING", logger="rag"), live_server(app):
        deadline = time.monotonic() + 60
        while gazette_id(site, 49) not in seed.data.article_by_id and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gazette_id(site, 49) in seed.data.article_by_id, "the served version has the feed's articles"
        assert app.state.feeds.thread.is_alive()
    assert not app.state.feeds.thread.is_alive(), "stopped with the server"
    assert "http://10.9.9.9/feed.xml: 10.9.9.9 is a private address" in caplog.text


@pytest.mark.slow
def test_rag_sync_and_rag_index_feed_on_the_command_line(site, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")}, "RAG_INDEX_DIR": str(tmp_path / "idx"),
           "RAG_EMBEDDING_MODEL": "fake:64", "RAG_FETCH_ALLOW": "127.0.0.1", "RAG_FETCH_INTERVAL": "0",
           "RAG_FEEDS": site.url("/feed.xml")}
    rag = [sys.executable, "-m", "newsrag.cli"]

    def run(*args, **extra):
        return subprocess.run([*rag, *args], env={**env, **extra}, capture_output=True, text=True, cwd=ROOT,
                              timeout=120)

    first = run("sync", "--json")
    assert first.returncode == 0, first.stderr
    assert len(json.loads(first.stdout)["feeds"][0]["new"]) == 50
    again = run("index", "--feed", site.url("/feed.xml"))
    assert again.returncode == 0 and "51 not modified" in again.stdout and "nothing to write" in again.stdout
    bad = run("sync", "--every", "15x")
    assert bad.returncode == 1 and "--every: '15x' is not a duration" in bad.stderr
    refused = run("sync", "--feed", "http://10.1.2.3/feed.xml", RAG_FEEDS="")
    assert refused.returncode == 1 and "10.1.2.3 is a private address" in refused.stdout + refused.stderr
    looping = subprocess.Popen([*rag, "sync", "--every", "1s"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen = [looping.stdout.readline() for _ in range(4)]  # two syncs: a feed line and an index line each
    looping.send_signal(signal.SIGINT)  # while it waits for the third
    out, err = looping.communicate(timeout=30)
    assert looping.returncode == 0 and "stopped" in err, (seen, out, err)
    assert sum("nothing to write" in line for line in seen) == 2


def test_settings_read_feeds_and_the_allow_list_from_the_environment(monkeypatch):
    from pydantic import ValidationError

    from rag.settings import Settings

    monkeypatch.setenv("RAG_FEEDS", "https://a.example/feed.xml, https://b.example/atom")
    monkeypatch.setenv("RAG_FETCH_ALLOW", "10.0.0.5,feeds.internal:8080")
    monkeypatch.setenv("RAG_FEED_EVERY", "30m")
    settings = Settings()
    assert settings.feeds == ["https://a.example/feed.xml", "https://b.example/atom"]
    assert settings.fetch_allow == ["10.0.0.5", "feeds.internal:8080"] and settings.feed_every == 1800
    monkeypatch.setenv("RAG_FEED_EVERY", "soon")
    with pytest.raises(ValidationError, match="is not a duration"):
        Settings()
    monkeypatch.setenv("RAG_FEED_EVERY", "15m")
    monkeypatch.setenv("RAG_FETCH_ALLOW", "10.0.0.0/40")
    with pytest.raises(ValidationError, match="RAG_FETCH_ALLOW entry"):
        Settings()
