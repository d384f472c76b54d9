"""The OpenVINO engine (int8 weights, the default): what it computes matches torch fp32's, and it is compiled once.

The adoption rule (README "Encoders side by side"): vectors at cosine >= 0.99 of torch fp32's and PIAF nDCG@10
within 0.005 (measured by bench/encoders.py). Here: the cosine on French, English and odd texts, the reader's
spans and margins on the windows its manifest records, and the compiled folders' life cycle.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag.reader.reader import MANIFEST_FILE, WEIGHTS_DIR, Reader

pytestmark = pytest.mark.slow

TEXTS = ["Microsoft a investi 13 milliards de dollars dans OpenAI depuis 2019.",
         "How much has Microsoft invested in OpenAI?", "Le ticket unitaire coûte désormais 2,30 euros.",
         "mot " * 700, "", "🙂 ½ — ǅ"]


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_vectors_match_torch_fp32(embedder, torch_embedder, kind):
    ours, theirs = embedder.embed(TEXTS, kind), torch_embedder.embed(TEXTS, kind)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(1).min() >= 0.999


def test_an_empty_batch_and_one_text_alone(embedder):
    assert embedder.embed([], "query").shape == (0, 384)
    alone, batched = embedder.embed(TEXTS[:1], "query"), embedder.embed(TEXTS, "query")[:1]
    assert float(alone[0] @ batched[0]) >= 0.9999, "padding in a batch does not change a text's vector"


def test_the_compiled_folder_is_made_once_and_named_after_its_source(embedder, e5_model_dir):
    from e5convert.openvino import MARKER

    folder = e5_model_dir.with_name(f"{e5_model_dir.name}-openvino-int8")
    about = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    assert about["source"] == e5_model_dir.name and about["weights"].startswith("int8")
    before = (folder / "model.bin").stat().st_mtime_ns
    from index.embedder import DEFAULT_MODEL, OpenVinoEmbedder

    OpenVinoEmbedder(DEFAULT_MODEL, e5_model_dir)
    assert (folder / "model.bin").stat().st_mtime_ns == before, "a second load compiles nothing"
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name], "no temporary folder left behind"


@pytest.fixture(scope="module")
def readers(e5_model_dir):
    return Reader.load(e5_model_dir, engine="openvino"), Reader.load(e5_model_dir, engine="torch")


def test_the_reader_reads_the_same_spans_as_torch(readers):
    ov, torch_reader = readers
    check = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))["check"]
    questions, windows = [c["question"] for c in check], [c["window"] for c in check]
    ours, theirs = ov.read_each(questions, windows), torch_reader.read_each(questions, windows)
    answering = [(a, b) for a, b in zip(ours, theirs) if b.margin > -5]  # the windows where a span matters
    assert len(answering) >= 8
    assert all(a.text == b.text for a, b in answering)
    gaps = sorted(abs(a.margin - b.margin) for a, b in zip(ours, theirs))
    assert gaps[len(gaps) // 2] < 0.3 and gaps[-1] < 3.0, gaps  # int8 weights move a margin, rarely by 2
    assert sum(a.text == b.text for a, b in zip(ours, theirs)) >= len(check) - 2


def test_an_unknown_engine_says_which_exist(e5_model_dir):
    from common.errors import ModelError

    with pytest.raises(ModelError, match="openvino, torch"):
        Reader.load(e5_model_dir, engine="onnx")
