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
    p.add_argument("--mode", default=None, choices=["dense", "lexical", "hybrid"],
                   help="retrieval mode (default RAG_RETRIEVAL_MODE)")
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

    evals = sub.add_parser("eval", help="measure retrieval and answers").add_subparsers(title="evaluations")
    _add_eval_retrieval(evals)
    _add_eval_answers(evals)
    _add_eval_reader(evals)
    _add_train(sub)
    return parser


PIAF = "../shared/datasets/piaf-v1.0/piaf-v1.0.json"


def _add_train(sub) -> None:
    """``rag train reader``: fine-tune the reader on PIAF's training part (see rag/reader/train.py)."""
    trains = sub.add_parser("train", help="train the project's models").add_subparsers(title="models")
    p = trains.add_parser("reader", help="fine-tune the answer reader (about 40 min on 2 cores)")
    p.add_argument("--squad", default=PIAF, metavar="FILE", help=f"SQuAD-format training data (default {PIAF})")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the weights and manifest "
                   "(default: rag/reader/weights, the shipped reader)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's, 13)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the examples (default 2)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only N training questions (a quick trial)")
    p.set_defaults(func=_cmd_train_reader)


def _add_eval_reader(evals) -> None:
    """``rag eval reader``: the reader end to end on PIAF's held-out articles."""
    p = evals.add_parser("reader", help="reader on PIAF's held-out articles, with and without each question's article")
    p.add_argument("--squad", default=PIAF, metavar="FILE", help=f"the SQuAD file the reader was trained from (default {PIAF})")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N held-out questions")
    p.add_argument("--min-answered", type=float, default=0.95, metavar="RATE",
                   help="report the reader threshold that answers RATE of the answerable questions (default 0.95)")
    p.add_argument("--out", default="var/eval", metavar="DIR", help="folder for the per-question records (JSON)")
    p.add_argument("--record", action="store_true", help="write the threshold and metrics into the shipped manifest")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_eval_reader)


def _add_eval_answers(evals) -> None:
    """``rag eval answers``: the editors' eval set through the /ask pipeline, a report and the quality gate."""
    p = evals.add_parser("answers", help="answer quality on an eval set (or SQuAD file): table, JSON, HTML, gate")
    p.add_argument("--set", dest="eval_set", default=None, metavar="FILE",
                   help="eval set (.jsonl) or SQuAD-format .json such as PIAF (default RAG_EVAL_SET: eval/items.jsonl)")
    p.add_argument("--backend", default=None, help="answer backend (default RAG_BACKEND)")
    p.add_argument("--top-k", type=int, default=None, help="passages per question (default RAG_TOP_K)")
    p.add_argument("--corpus", action="append", default=[], metavar="PATH",
                   help="answer from a fresh temporary index of these articles (repeatable); default: the index "
                        "`rag ask` uses, or for a SQuAD file the file itself")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N items (SQuAD: the questions of its first N articles, only those indexed)")
    p.add_argument("--baseline", default=None, metavar="RESULT.json", help="an earlier result to compare with, item by item")
    p.add_argument("--out", default="var/eval", metavar="DIR", help="folder for the JSON result and HTML report")
    p.add_argument("--thresholds", default=None, metavar="FILE", help="default eval/thresholds.toml")
    p.add_argument("--no-gate", action="store_true", help="report only: exit 0 even when a threshold is missed")
    p.add_argument("--judge", action="store_true", help="also grade answers with the openai backend's model (optional)")
    p.add_argument("--judge-repeats", type=int, default=3, metavar="N", help="judge calls averaged per item")
    p.set_defaults(func=_cmd_eval_answers)


def _add_eval_retrieval(evals) -> None:
    """``rag eval retrieval`` and ``rag eval calibrate``."""
    p = evals.add_parser("retrieval", help="recall@k, MRR, nDCG of each retrieval mode on a SQuAD file or BEIR folder")
    p.add_argument("--squad", "--beir", dest="source", required=True, metavar="PATH",
                   help="SQuAD-format .json (e.g. PIAF) or BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--mode", action="append", choices=["dense", "lexical", "hybrid"],
                   help="mode to measure (repeatable; default all three)")
    p.add_argument("--index-dir", default=None, help="keep the eval index here and reuse it next time (default: temporary)")
    p.add_argument("--limit", type=int, default=None, help="only the first N articles")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_eval_retrieval)

    p = evals.add_parser("calibrate", help="abstention threshold: questions asked with and without their article")
    p.add_argument("--squad", dest="source", required=True, metavar="FILE", help="SQuAD-format .json (e.g. PIAF)")
    p.add_argument("--mode", default=None, choices=["dense", "lexical", "hybrid"], help="default RAG_RETRIEVAL_MODE")
    p.add_argument("--min-answered", type=float, default=0.95, metavar="RATE",
                   help="threshold answering at least RATE of answerable questions (default 0.95; 0: best balanced accuracy)")
    p.add_argument("--index-dir", default=None, help="keep the eval index here and reuse it next time (default: temporary)")
    p.add_argument("--limit", type=int, default=None, help="only the first N articles")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_eval_calibrate)


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
    answer = pipeline.ask(args.question, top_k=args.top_k, backend=args.backend, filters=filters, mode=args.mode)
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
    for note in answer.notes:
        print(f"note: {note}", file=sys.stderr)
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


def _cmd_eval_retrieval(args) -> int:
    from eval.retrieval import MODES, format_report, run

    report = run(args.source, _settings(), modes=args.mode or MODES, index_dir=args.index_dir, limit=args.limit)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def _cmd_eval_answers(args) -> int:
    from eval.cli import run_command

    return run_command(args, _settings())


def _cmd_eval_calibrate(args) -> int:
    from eval.calibrate import calibrate, format_calibration

    settings = _settings()
    result = calibrate(args.source, settings, mode=args.mode or settings.retrieval_mode,
                       index_dir=args.index_dir, limit=args.limit, min_answered=args.min_answered)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_calibration(result))
    return 0


def _cmd_train_reader(args) -> int:
    from pathlib import Path

    from index.e5convert import ensure_converted
    from rag.reader.reader import WEIGHTS_DIR
    from rag.reader.train import EPOCHS, SEED, train

    squad = Path(args.squad)
    if not squad.is_file():
        raise InputError(f"{squad}: no such SQuAD file; pass --squad FILE (PIAF v1.0 is in ../shared/datasets)")
    base = ensure_converted(_settings().cache_dir / "models")
    train(squad, base, Path(args.out or WEIGHTS_DIR), seed=SEED if args.seed is None else args.seed,
          epochs=args.epochs or EPOCHS, limit=args.limit)
    return 0


def _cmd_eval_reader(args) -> int:
    from pathlib import Path

    from eval.reader import format_summary, record, run, summarise

    settings = _settings()
    squad = Path(args.squad)
    if not squad.is_file():
        raise InputError(f"{squad}: no such SQuAD file; pass --squad FILE")
    records = run(squad, settings, args.limit, progress=_progress)
    summary = summarise(records, settings.abstain_threshold, args.min_answered)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reader-held-out.json").write_text(json.dumps({"summary": summary, "records": records},
                                                         ensure_ascii=False, indent=1), encoding="utf-8")
    if args.record:
        record(summary, settings.reader_dir)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty() or done == total or done % 50 == 0:
        print(f"{done}/{total} questions", file=sys.stderr, flush=True)


def _cmd_serve(args) -> int:
    import importlib

    settings = _settings()
    # The server lives in ui/ because it mounts the web UI beside the API (ui -> rag).
    server = importlib.import_module("ui.server")
    server.serve(settings, host=args.host or settings.host, port=args.port or settings.port, sync=not args.no_sync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
