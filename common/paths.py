"""Where the project keeps what it downloads or converts (models, tokenizer files)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``RAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/newsrag``, else ``~/.cache/newsrag``."""
    root = os.environ.get("RAG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "newsrag"
    )
    return Path(root)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (an ``OSError`` when it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
