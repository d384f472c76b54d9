"""The ``rag eval`` subcommands: ``retrieval``, ``calibrate``, ``answers`` (the eval set through the /ask
pipeline, a report and the quality gate) and ``reader`` (the reader on PIAF's held-out articles)."""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

from common.errors import InputError
from eval.dataset import EvalItem, load_items
from eval.gate import check_gate, compare_runs, gate_rows, load_config
from eval.report import format_table, render_html
from eval.runner import EvalRun, run_eval
from index.squad import PIAF
from rag.settings import get_settings
from rag.types import MODES


def register_commands(sub) -> None:
    """Add ``eval`` and its evaluations to the ``rag`` command's subparsers."""
    evals = sub.add_parser("eval", help="measure retrieval and answers").add_subparsers(title="evaluations")
    _add_eval_retrieval(evals)
    _add_eval_answers(evals)
    _add_eval_reader(evals)
    _add_eval_followups(evals)
    _add_eval_items(evals)


def _add_eval_items(evals) -> None:
    """``rag eval items export|import|delete``: the eval set in and out of the editors' hands."""
    p = evals.add_parser("items", help="export, import or delete eval set items (JSON Lines or CSV)")
    ops = p.add_subparsers(title="operations", required=True)
    e = ops.add_parser("export", help="write the items (with their verdicts) as JSON Lines or CSV")
    e.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    e.add_argument("--out", default="-", metavar="FILE", help="default: standard output")
    e.set_defaults(func=_cmd_items_export)
    i = ops.add_parser("import", help="add items from a JSON Lines or CSV file; an existing id is updated")
    i.add_argument("file", metavar="FILE", help=".jsonl (or .json lines) or .csv, as `export` writes them")
    i.set_defaults(func=_cmd_items_import)
    d = ops.add_parser("delete", help="remove items by id")
    d.add_argument("ids", nargs="+", metavar="ID")
    d.set_defaults(func=_cmd_items_delete)
    for q in (e, i, d):
        q.add_argument("--eval-set", default=None, metavar="FILE", help="default RAG_EVAL_SET (eval/items.jsonl)")


def _evalset(args):
    from eval.dataset import EvalSet

    return EvalSet(args.eval_set or get_settings().eval_set)


def _cmd_items_export(args) -> int:
    from eval.dataset import items_to_csv, items_to_jsonl

    items = _evalset(args).items()
    text = items_to_csv(items) if args.format == "csv" else items_to_jsonl(items)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(items)} items written to {args.out}", file=sys.stderr)
    return 0


def _cmd_items_import(args) -> int:
    from eval.dataset import parse_items

    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give a .jsonl or .csv export")
    evalset = _evalset(args)
    done = evalset.import_items(parse_items(path.read_text(encoding="utf-8"), path.name), str(path))
    print(f"{len(done['added'])} added, {len(done['updated'])} updated in {evalset.path}")
    return 0


def _cmd_items_delete(args) -> int:
    evalset = _evalset(args)
    for item_id in args.ids:
        evalset.delete(item_id)
    print(f"{len(args.ids)} deleted from {evalset.path}")
    return 0


def _add_eval_followups(evals) -> None:
    """``rag eval followups``: two-turn conversations, is the follow-up's passage retrieved?"""
    from eval.followups import DEFAULT_SET

    p = evals.add_parser("followups", help="follow-up questions: passage retrieved alone, rewritten, concatenated")
    p.add_argument("--set", dest="followups", default=str(DEFAULT_SET), metavar="FILE",
                   help="conversations (JSON Lines: previous, question, evidence); default eval/followups.jsonl")
    p.add_argument("--corpus", action="append", default=[], metavar="PATH",
                   help="articles indexed for the run (default corpus/ and tests/data/articles/)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_eval_followups)


def _cmd_eval_followups(args) -> int:
    from eval.followups import DEFAULT_CORPUS, format_report, load, measure

    items = load(args.followups)
    with contextlib.ExitStack() as stack:
        pipeline = _pipeline(get_settings(), args.corpus or [str(p) for p in DEFAULT_CORPUS], stack)
        report = measure(pipeline, items)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def _add_eval_reader(evals) -> None:
    """``rag eval reader``: the reader end to end on PIAF's held-out articles."""
    p = evals.add_parser("reader", help="reader on PIAF's held-out articles, with and without each question's article")
    p.add_argument("--squad", default=PIAF, metavar="FILE",
                   help=f"the SQuAD file the reader was trained from (default {PIAF})")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N held-out questions")
    p.add_argument("--min-answered", type=float, default=0.95, metavar="RATE",
                   help="report the reader threshold that answers RATE of the answerable questions (default 0.95)")
    p.add_argument("--out", default="var/eval", metavar="DIR", help="folder for the per-question records (JSON)")
    p.add_argument("--record", action="store_true", help="write the measured metrics into the reader's manifest")
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
    p.add_argument("--baseline", default=None, metavar="RESULT.json",
                   help="an earlier result to compare with, item by item")
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
    p.add_argument("--mode", action="append", choices=MODES,
                   help="mode to measure (repeatable; default all three)")
    p.add_argument("--index-dir", default=None,
                   help="keep the eval index here and reuse it next time (default: temporary)")
    p.add_argument("--limit", type=int, default=None, help="only the first N articles")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_eval_retrieval)

    p = evals.add_parser("calibrate", help="abstention threshold: questions asked with and without their article")
    p.add_argument("--squad", dest="source", required=True, metavar="FILE", help="SQuAD-format .json (e.g. PIAF)")
    p.add_argument("--mode", default=None, choices=MODES, help="default RAG_RETRIEVAL_MODE")
    p.add_argument("--min-answered", type=float, default=0.95, metavar="RATE",
                   help="threshold answering at least RATE of answerable questions "
                        "(default 0.95; 0: best balanced accuracy)")
    p.add_argument("--index-dir", default=None,
                   help="keep the eval index here and reuse it next time (default: temporary)")
    p.add_argument("--limit", type=int, default=None, help="only the first N articles")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_eval_calibrate)


def _cmd_eval_retrieval(args) -> int:
    from eval.retrieval import format_report, run

    report = run(args.source, get_settings(), modes=args.mode or MODES, index_dir=args.index_dir, limit=args.limit)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def _cmd_eval_answers(args) -> int:
    return run_command(args, get_settings())


def _cmd_eval_calibrate(args) -> int:
    from eval.calibrate import calibrate, format_calibration

    settings = get_settings()
    result = calibrate(args.source, settings, mode=args.mode or settings.retrieval_mode,
                       index_dir=args.index_dir, limit=args.limit, min_answered=args.min_answered)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_calibration(result))
    return 0


def _cmd_eval_reader(args) -> int:
    from pathlib import Path

    from eval.reader import format_summary, reader_gate, record, run, summarise

    settings = get_settings()
    squad = Path(args.squad)
    if not squad.is_file():
        raise InputError(f"{squad}: no such SQuAD file; pass --squad FILE")
    gate, shipped = reader_gate(settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = run(squad, settings, args.limit, progress=_progress_lines)
    (out / "reader-held-out.json").write_text(json.dumps({"records": records}, ensure_ascii=False),
                                              encoding="utf-8")  # kept whatever happens next
    summary = {"at_shipped_threshold": summarise(records, gate, threshold=shipped),
               f"at_{args.min_answered:.0%}_answered": summarise(records, gate, args.min_answered)}
    (out / "reader-held-out.json").write_text(json.dumps({"summary": summary, "records": records},
                                                         ensure_ascii=False, indent=1), encoding="utf-8")
    if args.record:
        limit = f" --limit {args.limit}" if args.limit else ""
        record(summary, settings.reader_dir, f"rag eval reader --record{limit}")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, s in summary.items():
            print(f"{name.replace('_', ' ')}: {format_summary(s)}")
    return 0


def _progress_lines(done: int, total: int) -> None:
    if sys.stderr.isatty() or done == total or done % 50 == 0:
        print(f"{done}/{total} questions", file=sys.stderr, flush=True)


def run_command(args, settings) -> int:
    """Run the evaluation the arguments describe; 1 when the set's gate is missed."""
    set_path = Path(args.eval_set or settings.eval_set)
    config = load_config(args.thresholds)
    baseline = _read_json(args.baseline) if args.baseline else None
    with contextlib.ExitStack() as stack:
        items, corpus = _select(set_path, args.limit, args.corpus, stack)
        pipeline = _pipeline(settings, corpus, stack)
        judge = _judge(settings, args.judge_repeats) if args.judge else None
        run = run_eval(pipeline, items, args.backend, top_k=args.top_k, config=config, judge=judge,
                       progress=_progress)
    result = run.to_dict()
    gate = config.gate_for(set_path.stem, run.meta["backend"])
    result["meta"].update(set=str(set_path), gated=bool(gate), judge_failures=getattr(judge, "failures", None))
    comparison = compare_runs(result, baseline) if baseline else None
    rows = gate_rows(run.summary, gate)
    _write(result, rows, comparison, Path(args.out), set_path.stem)
    print(format_table(rows, comparison))
    return _verdict(run, gate, set_path, args.no_gate)


def _select(set_path: Path, limit: int | None, corpus: list[str], stack) -> tuple[list[EvalItem], list[str]]:
    """The items to run and the corpus to index (empty: the configured index)."""
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    if set_path.suffix.lower() != ".json":
        return load_items(set_path)[:limit], corpus
    if limit is None:
        return load_items(set_path), corpus or [str(set_path)]
    data = _read_json(set_path)
    trimmed = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rag-eval-squad-"))) / set_path.name
    trimmed.write_text(json.dumps({**data, "data": data.get("data", [])[:limit]}, ensure_ascii=False), encoding="utf-8")
    return load_items(trimmed), corpus or [str(trimmed)]


def _pipeline(settings, corpus: list[str], stack):
    """The pipeline /ask uses; over a fresh temporary index when a corpus is given."""
    from rag.service import load_pipeline

    if not corpus:
        return load_pipeline(settings)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rag-eval-index-")))
    temporary = settings.model_copy(update={"index_dir": folder / "index", "corpus_dirs": [Path(p) for p in corpus]})
    return load_pipeline(temporary, sync=True)


def _judge(settings, repeats: int):
    from eval.judge import judge_from_settings

    return judge_from_settings(settings, repeats)


def _write(result: dict, rows: list[dict], comparison: dict | None, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / f"answers-{stem}.json", out / f"answers-{stem}.html"
    json_path.write_text(json.dumps({**result, "comparison": comparison}, ensure_ascii=False, indent=1),
                         encoding="utf-8")
    html_path.write_text(render_html(result, rows, comparison, f"Answer quality — {stem}"), encoding="utf-8")
    print(f"result: {json_path}\nreport: {html_path}", file=sys.stderr)


def _verdict(run: EvalRun, gate: dict, set_path: Path, no_gate: bool) -> int:
    if not gate:
        print(f"(no thresholds for set '{set_path.stem}' in the thresholds file: not gated)", file=sys.stderr)
        return 0
    failures = check_gate(run.summary, gate)
    for failure in failures:
        print(f"quality gate: {failure}", file=sys.stderr)
    if failures and not no_gate:
        print("quality gate FAILED; see the report, fix the regression, or (if the change is intended) "
              "update eval/thresholds.toml and say why", file=sys.stderr)
        return 1
    print(f"quality gate {'passed' if not failures else 'missed (--no-gate)'} ({run.summary['items']} items)",
          file=sys.stderr)
    return 0


def _read_json(path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from exc


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{done}/{total} questions", end="" if done < total else "\n", file=sys.stderr, flush=True)
