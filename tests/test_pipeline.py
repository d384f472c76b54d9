"""The pipeline on a fake embedder: answers, citations, abstention, input checks, backends."""
import re

import pytest

from common.citations import strip_attribution
from common.errors import InputError, UnknownNameError
from index.build import update_index
from index.chunker import Chunker
from index.store import IndexStore
from rag.backends import Request, backend_names, get_backend
from rag.pipeline import Pipeline
from rag.retriever import Retrieval, RetrievalConfig
from tests.fakes import fake_pipeline
from tests.openai_stub import OpenAIStub, contract_settings


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return fake_pipeline(tmp_path_factory.mktemp("idx"))


def test_answer_cites_retrieved_passages(pipeline):
    answer = pipeline.ask("Microsoft a investi 13 milliards de dollars cumulés dans OpenAI ?")
    assert not answer.abstained
    assert "13 milliards" in answer.answer
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)]
    assert cited and all(1 <= n <= len(answer.citations) for n in cited)
    by_n = {c.n: c for c in answer.citations}
    assert answer.answer.startswith("Selon l'article du 24 juin 2025 :"), "the answer says its article's date"
    for sentence, n in re.findall(r"(.+?) \[(\d+)\]\s*", strip_attribution(answer.answer)):
        citation = by_n[int(n)]
        assert sentence.strip() in citation.text, "each sentence is taken from the passage it cites"
        assert any(citation.text[a:b] == sentence.strip() for a, b in citation.highlights)
    assert set(answer.timings_ms) == {"embed", "search", "generate", "total"}
    assert answer.to_dict()["citations"][0]["chunk_id"].startswith("openai-microsoft-partenariat#")


def test_abstains_below_threshold(pipeline):
    strict = Pipeline(pipeline.settings.model_copy(update={"abstain_threshold": 0.99}), pipeline.embedder,
                      pipeline.data)
    answer = strict.ask("Quelle est la recette de la ratatouille ?")
    assert answer.abstained and answer.answer == "Les articles ne le disent pas."
    assert answer.citations, "the closest passages are still offered"
    assert strict.ask("What is the recipe?").answer == "The articles don't say."


@pytest.mark.parametrize("question, message", [("", "empty"), ("   ", "empty"), ("x" * 2001, "limit is 2000")])
def test_bad_questions(pipeline, question, message):
    with pytest.raises(InputError, match=message):
        pipeline.ask(question)


def test_unknown_backend_lists_known(pipeline):
    with pytest.raises(UnknownNameError, match="known: .*extractive"):
        pipeline.ask("Microsoft ?", backend="nope")


def test_swap_replaces_the_index(pipeline, tmp_path):
    emb = pipeline.embedder
    from index.types import Article

    other, _ = update_index(IndexStore(tmp_path), emb, Chunker(),
                            [Article(id="x", title="Autre", text="La ratatouille se cuit lentement au four.")])
    p = Pipeline(pipeline.settings, emb, pipeline.data)
    p.swap(other)
    assert p.ask("ratatouille au four").citations[0].article_id == "x"


@pytest.fixture(scope="module")
def openai_server():
    """A scripted OpenAI-compatible server on 127.0.0.1 for the openai backend's turn."""
    with OpenAIStub() as server:
        yield server


@pytest.mark.parametrize("name", backend_names())
def test_backend_contract(name, pipeline, openai_server):
    """Every registered backend answers with citations that point at given passages.

    openai answers from a scripted server; llamacpp runs when RAG_LLAMACPP_MODEL names a GGUF file.
    """
    backend = get_backend(name, contract_settings(name, pipeline.settings, openai_server), pipeline.embedder)
    retrieval = Retrieval(pipeline.data, pipeline.embedder, RetrievalConfig(mode="dense"))
    question = "Combien Microsoft a-t-il investi dans OpenAI ?"
    hits = tuple(retrieval.search(question, retrieval.embed(question), 3))
    generation = backend.generate(Request(question, hits, "fr"))
    assert generation.text.strip() and not generation.abstained
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", generation.text)]
    assert cited and all(1 <= n <= len(hits) for n in cited)
    for n, spans in generation.highlights.items():
        assert 1 <= n <= len(hits)
        assert all(0 <= a < b <= len(hits[n - 1].chunk.text) for a, b in spans)


def test_stream_sends_citations_then_deltas_then_the_answer(pipeline):
    events = list(pipeline.ask_stream("Microsoft a investi 13 milliards de dollars dans OpenAI ?"))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "citations" and kinds[-1] == "done" and kinds.count("delta") >= 3
    final = events[-1]["data"]
    assert "".join(e["data"]["text"] for e in events if e["event"] == "delta") == final["answer"]
    assert [c["chunk_id"] for c in events[0]["data"]] == [c["chunk_id"] for c in final["citations"]]
    assert final == {**pipeline.ask(final["question"]).to_dict(), "timings_ms": final["timings_ms"]}


@pytest.mark.parametrize("question", ["\u200b\u200c", "\x00\x00", "\ufeff \u2060", "\u202e"])
def test_a_question_of_only_invisible_characters_is_refused(tmp_path, question):
    from common.errors import InputError

    pipeline = fake_pipeline(tmp_path / "index")
    with pytest.raises(InputError, match="only invisible characters"):
        pipeline.ask(question)


def test_the_questions_language_never_brings_in_another_articles_sentence():
    """The Rome/Lyon case: a French sentence of the Lyon article was quoted for a French question on
    Rome's (English) article because it scored nearly as well."""
    import numpy as np

    from rag.backends.extractive import Candidate, ExtractiveBackend

    v = np.eye(4, dtype=np.float32)
    rome = Candidate(1, 0, 10, "Archaeologists found a barracks.", "en", 0.90, v[0], "rome")
    lyon = Candidate(2, 0, 10, "Lyon a mis en service 400 vélos.", "fr", 0.88, v[1], "lyon")
    rome_fr = Candidate(1, 20, 40, "Les archéologues ont trouvé une caserne.", "fr", 0.87, v[2], "rome")
    backend = ExtractiveBackend(embedder=None, max_sentences=1)
    assert backend.select([rome, lyon], "fr", 1) == [rome]
    assert backend.select([rome, lyon, rome_fr], "fr", 1) == [rome_fr], "the same article in the question's language"
