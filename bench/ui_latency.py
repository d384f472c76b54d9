"""Time to an answer in the browser against the server's own time: the chat's overhead.

    .venv/bin/python bench/ui_latency.py [--rounds 3]

Serves the UI (what ``make run`` serves) over the bundled corpus on 127.0.0.1, drives Debian's
Chromium with Playwright, asks six questions ``--rounds`` times (the first round warms the model and
is not counted) and prints, per question and as medians: the time from the click to the first
answer text painted, to the finished answer (with its sources), and the server's total
(``timings_ms.total``, shown in each answer); overhead = finished − server.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = ["Combien Microsoft a-t-il investi dans OpenAI ?",
             "Pourquoi Sam Altman s'est-il entretenu avec Satya Nadella ?",
             "Quelle est la recette de la ratatouille ?", "Quels sont les concurrents d'OpenAI ?",
             "Depuis quand Microsoft et OpenAI sont-ils partenaires ?", "Qui dirige OpenAI ?"]
WATCH = """() => { window.__t0 = performance.now(); window.__first = null; window.__done = null;
  const done = () => document.querySelectorAll('#chat .rag-answer:not(.streaming)').length;
  const before = done(), count = document.querySelectorAll('#chat .rag-answer').length;
  const o = new MutationObserver(() => {
    const all = document.querySelectorAll('#chat .rag-answer'), last = all[all.length - 1];
    const text = last && last.querySelector('.answer-text');
    const painted = text && !text.querySelector('.pending') && text.innerText.trim();
    if (window.__first === null && all.length > count && painted)
      window.__first = performance.now();
    if (done() > before) { window.__done = performance.now(); o.disconnect(); }
  });
  o.observe(document.querySelector('#chat'), {childList: true, subtree: true, characterData: true}); }"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from newsrag.server import create_server_app
    from rag.pipeline import Pipeline
    from rag.service import index_paths, make_embedder
    from rag.settings import Settings
    from tests.live_server import live_server
    from tests.test_ui_live import CHROMIUM, FLAGS

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(index_dir=Path(tmp) / "index", eval_runs_dir=Path(tmp) / "runs",
                            feedback_file=Path(tmp) / "feedback.jsonl")
        embedder = make_embedder(settings)
        data, _ = index_paths(settings, embedder, settings.corpus_dirs)
        pipeline = Pipeline(settings, embedder, data)
        rows = []
        with live_server(create_server_app(settings, load=lambda: pipeline)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 800}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/ui/")
            page.wait_for_selector("#question textarea")
            for i, question in enumerate(QUESTIONS * args.rounds):
                page.fill("#question textarea", question)
                page.evaluate(WATCH)
                page.click("#ask")
                page.wait_for_function("() => window.__done !== null")
                first, done = page.evaluate("[window.__first - window.__t0, window.__done - window.__t0]")
                meta = page.locator("#chat .rag-answer:not(.streaming) .answer-meta").nth(i).inner_text()
                server = float(re.search(r"(\d+) ms", meta).group(1))
                rows.append((first, done, server))
                print(f"{question[:48]:48s} first {first:5.0f} ms  finished {done:5.0f} ms  server {server:4.0f} ms")
            browser.close()
    counted = rows[len(QUESTIONS):] or rows
    medians = [statistics.median(r[k] for r in counted) for k in range(3)]
    print(f"median over {len(counted)} answers (load {os.getloadavg()[0]:.2f}): first text {medians[0]:.0f} ms, "
          f"finished {medians[1]:.0f} ms, server {medians[2]:.0f} ms, overhead "
          f"{statistics.median(r[1] - r[2] for r in counted):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
