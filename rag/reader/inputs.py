"""What the reader reads: passage windows, and the token pairs fed to the network.

A passage is cut into windows of whole sentences, at most ``WINDOW_CHARS`` characters each
(one long sentence is a window on its own): about 100 tokens, which keeps a read of four
windows near 150 ms on two cores, while a whole 256-token chunk per read would take four
times as long. Training cuts PIAF paragraphs the same way, so the reader learns on the
windows it meets in service.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.sentences import sentence_spans

WINDOW_CHARS = 420
QUESTION_TOKENS = 48
WINDOW_TOKENS = 128
BOS, PAD, EOS = 0, 1, 2
QUESTION_PROMPT = "query: "


def windows(text: str, limit: int = WINDOW_CHARS) -> list[tuple[int, int]]:
    """Character spans of consecutive sentences of ``text``, packed up to ``limit`` characters."""
    out: list[tuple[int, int]] = []
    for a, b in sentence_spans(text):
        if out and b - out[-1][0] <= limit and _same_block(text, out[-1][1], a):
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _same_block(text: str, end: int, start: int) -> bool:
    """True when no blank line (a paragraph break) separates the two sentences."""
    return "\n\n" not in text[end:start]


@dataclass(frozen=True)
class Pair:
    """One question-window input: token ids and, per token, its character span in the window
    (``None`` for the question and the special tokens)."""

    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int] | None, ...]

    @property
    def passage_positions(self) -> range:
        """Token positions of the window's text."""
        first = next(i for i, o in enumerate(self.offsets) if o is not None)
        return range(first, len(self.ids) - 1)


def encode_pair(tokenizer, question: str, window: str) -> Pair:
    """``<s> query: QUESTION </s> WINDOW </s>``, each part cut to its token budget."""
    q = tokenizer.encode(QUESTION_PROMPT + question, add_special_tokens=False).ids[:QUESTION_TOKENS]
    w = tokenizer.encode(window, add_special_tokens=False)
    w_ids, w_offsets = w.ids[:WINDOW_TOKENS], w.offsets[:WINDOW_TOKENS]
    ids = (BOS, *q, EOS, *w_ids, EOS)
    offsets = (None,) * (len(q) + 2) + tuple(tuple(o) for o in w_offsets) + (None,)
    return Pair(ids, offsets)


def token_span(pair: Pair, start: int, end: int) -> tuple[int, int] | None:
    """The first and last token positions covering characters ``start:end`` of the window, or
    None when the window (as cut to its budget) does not hold them all."""
    first = last = None
    for i in pair.passage_positions:
        a, b = pair.offsets[i]
        if first is None and b > start:
            first = i
        if a < end:
            last = i
    if first is None or last is None or last < first or pair.offsets[last][1] < end:
        return None
    return first, last
