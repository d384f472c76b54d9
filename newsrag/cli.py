"""The ``rag`` command: each package adds its subcommands; errors a user can act on become messages."""
from __future__ import annotations

import argparse
import sys

from common.errors import RagError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rag`` console script; returns the exit status."""
    parser = build_parser()
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


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: ``index``, ``sync``, ``ask``, ``articles``, ``train`` (rag), ``eval``, ``serve``."""
    import eval.commands
    import rag.commands

    parser = argparse.ArgumentParser(prog="rag",
                                     description="Question answering over news articles, with cited sources.")
    sub = parser.add_subparsers(title="commands")
    rag.commands.register_commands(sub)
    _add_serve(sub)
    eval.commands.register_commands(sub)
    rag.commands.register_train(sub)
    return parser


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API and the web UI")
    p.add_argument("--host", default=None, help="default RAG_HOST (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default RAG_PORT (8000)")
    p.add_argument("--no-sync", action="store_true", help="do not re-index the corpus folders at start")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args) -> int:
    from newsrag.server import serve
    from rag.settings import get_settings

    settings = get_settings()
    serve(settings, host=args.host or settings.host, port=args.port or settings.port, sync=not args.no_sync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
