"""The ``rag`` command: index articles, ask questions, serve the API and UI, run evaluations."""
from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap

from index.errors import InputError, RagError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rag`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Question answering over news articles, with cited sources.")
    sub = parser.add_subparsers(title="commands")

    p = sub.add_parser("index", help="index articles (Markdown, text, HTML, JSON Lines, SQuAD JSON) incrementally")
    p.add_argument("paths", nargs="*", help="files or folders of articles")
    p.add_argument("--delete", action="append", default=[], metavar="ID", help="delete an article by id (repeatable)")
    p.add_argument("--prune", action="store_true", help="also delete indexed articles whose files under PATHS are gone")
    p.add_argument("--rebuild", action="store_true", help="start from an empty index (after a model or chunker change)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("ask", help="answer a question from the indexed articles")
    p.add_argument("question")
    p.add_argument("--top-k", type=int, default=None, help="passages to retrieve (default RAG_TOP_K)")
    p.add_argument("--backend", default=None, help="answer backend (default RAG_BACKEND)")
    p.add_argument("--article", action="append", default=[], metavar="ID", help="only search these articles")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=_cmd_ask)

    p = sub.add_parser("articles", help="list the indexed articles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_articles)

    p = sub.add_parser("serve", help="serve the HTTP API and the web UI")
    p.add_argument("--host", default=None, help="default RAG_HOST (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default RAG_PORT (8000)")
    p.add_argument("--no-sync", action="store_true", help="do not re-index the corpus folders at start")
    p.set_defaults(func=_cmd_serve)
    return parser


def _settings():
    from rag.settings import get_settings

    return get_settings()


def _cmd_index(args) -> int:
    from rag.service import index_paths, make_embedder

    if not args.paths and not args.delete:
        raise InputError("give paths to index, or --delete ID")
    settings = _settings()
    _, report = index_paths(settings, make_embedder(settings, progress=True), args.paths,
                            delete=args.delete, prune=args.prune, rebuild=args.rebuild)
    if args.json:
        print(json.dumps(report.__dict__, indent=2))
    else:
        print(f"{report.summary()} in {report.seconds['total']:.1f} s -> {settings.index_dir}")
    return 0


def _cmd_ask(args) -> int:
    from rag.retriever import Filters
    from rag.service import load_pipeline

    pipeline = load_pipeline(_settings())
    filters = Filters(article_ids=tuple(args.article)) if args.article else None
    answer = pipeline.ask(args.question, top_k=args.top_k, backend=args.backend, filters=filters)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(answer.answer)
    print()
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    label = "Related passages" if answer.abstained else "Sources"
    print(f"{label}:")
    for c in answer.citations:
        if answer.abstained or c.n in cited:
            where = f"{c.title} ({c.date})" if c.date else c.title
            print(f"[{c.n}] {where} — score {c.score:.3f}, chars {c.start}-{c.end}")
            snippet = " ".join(c.text[h[0]:h[1]] for h in c.highlights) or c.text
            print(textwrap.indent(textwrap.fill(snippet, 100), "    "))
    print(f"\n({answer.backend}, {answer.timings_ms['total']:.0f} ms)", file=sys.stderr)
    return 0


def _cmd_articles(args) -> int:
    from index.store import IndexStore

    settings = _settings()
    data = IndexStore(settings.index_dir).load(verify=False)
    rows = [{"id": a.id, "title": a.title, "date": a.date, "language": a.language, "chunks": a.n_chunks}
            for a in data.articles]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    for row in [] if args.json else rows:
        print(f"{row['id']}\t{row['date']}\t{row['language']}\t{row['chunks']} chunks\t{row['title']}")
    return 0


def _cmd_serve(args) -> int:
    import importlib

    settings = _settings()
    # The server lives in ui/ because it mounts the web UI beside the API (ui -> rag).
    server = importlib.import_module("ui.server")
    server.serve(settings, host=args.host or settings.host, port=args.port or settings.port, sync=not args.no_sync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
