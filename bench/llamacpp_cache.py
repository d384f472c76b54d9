"""xllamacpp's prompt cache and thread count: the same long prompt twice, at 1 and 2 threads.

    .venv/bin/python bench/llamacpp_cache.py --model FILE.gguf [--threads 1 2] [--chars 5000]

The prompt is the start of the bundled article and a question (about 1,600 tokens for 5,000
characters); per thread count a fresh server answers it twice. Printed per answer: wall time, tokens
processed vs taken from the cache, prompt and generation speed (llama.cpp's own timings), and the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="a GGUF chat model")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chars", type=int, default=5000)
    args = parser.parse_args()
    if not args.model.is_file():
        print(f"{args.model}: no such file; give a GGUF chat model with --model", file=sys.stderr)
        return 2
    import xllamacpp

    article = sorted((ROOT / "corpus").glob("*.md"))[0].read_text(encoding="utf-8")[:args.chars]
    messages = [{"role": "system", "content": "Réponds d'après le texte."},
                {"role": "user", "content": article + "\n\nQuestion : combien Microsoft a-t-il investi ?"}]
    for threads in args.threads:
        params = xllamacpp.CommonParams()
        params.model.path, params.n_ctx, params.n_parallel = str(args.model), 4096, 1
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
        server = xllamacpp.Server(params)
        for attempt in ("first", "again"):
            timings: dict = {}

            def chunk(data, timings=timings) -> bool:
                timings.update(data.get("timings") or {})
                return False

            started = time.perf_counter()
            server.handle_chat_completions({"messages": messages, "max_tokens": 100, "temperature": 0,
                                            "stream": True, "cache_prompt": True}, chunk)
            print(f"threads {threads} {attempt}: {time.perf_counter() - started:5.1f} s, prompt tokens processed "
                  f"{timings.get('prompt_n')} (from cache {timings.get('cache_n')}) at "
                  f"{timings.get('prompt_per_second', 0):.0f}/s, generated {timings.get('predicted_n')} at "
                  f"{timings.get('predicted_per_second', 0):.1f}/s, load {os.getloadavg()[0]:.2f}", flush=True)
        del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
