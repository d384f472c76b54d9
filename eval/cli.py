"""``rag eval answers``: run an eval set through the /ask pipeline, report, and check the gate."""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

from eval.dataset import EvalItem, load_items
from eval.gate import check_gate, compare_runs, gate_rows, load_config
from eval.report import format_table, render_html
from eval.runner import EvalRun, run_eval
from index.errors import InputError


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
    json_path.write_text(json.dumps({**result, "comparison": comparison}, ensure_ascii=False, indent=1), encoding="utf-8")
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
