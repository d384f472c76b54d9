"""Ingest throughput: the whole indexing pipeline vs raw SentenceTransformer.encode on the same chunks.

    .venv/bin/python bench/ingest.py [--source ../shared/datasets/piaf-v1.0/piaf-v1.0.json] [--limit N]

Prints chunks/s for (a) raw ``model.encode`` of the exact passage texts the index embeds, with the
same prompt and batch size, and (b) ``update_index`` from loaded articles to a written index
(chunking, embedding, FAISS, atomic write). The target is (b) >= 90% of (a).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.build import passage_text, update_index  # noqa: E402
from index.loaders import load_articles  # noqa: E402
from index.store import IndexStore  # noqa: E402
from rag.service import make_chunker, make_embedder  # noqa: E402
from rag.settings import get_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared/datasets/piaf-v1.0/piaf-v1.0.json"),
                        help="articles to ingest (any format `rag index` reads); default PIAF v1.0")
    parser.add_argument("--limit", type=int, default=60, help="articles to use (default 60)")
    args = parser.parse_args()
    settings = get_settings()
    articles = load_articles([args.source])[: args.limit]
    embedder, chunker = make_embedder(settings), make_chunker(settings)
    texts = [passage_text(c) for a in articles for c in chunker.chunk(a)]
    model = embedder.model
    model.encode(texts[:64], prompt_name="passage", batch_size=settings.embed_batch_size)  # warm-up

    started = time.perf_counter()
    model.encode(texts, prompt_name="passage", batch_size=settings.embed_batch_size, normalize_embeddings=True)
    raw = len(texts) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data, report = update_index(IndexStore(tmp), embedder, chunker, articles)
        pipeline = len(data.chunks) / (time.perf_counter() - started)

    print(f"articles: {len(articles)}  chunks: {len(texts)}  model: {embedder.name}  "
          f"batch: {settings.embed_batch_size}")
    print(f"raw SentenceTransformer.encode : {raw:8.1f} chunks/s")
    print(f"pipeline (load..write)         : {pipeline:8.1f} chunks/s   ({report.seconds})")
    print(f"pipeline / raw                 : {pipeline / raw:8.1%}   (target >= 90%)")


if __name__ == "__main__":
    main()
