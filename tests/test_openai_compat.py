"""The OpenAI Python client, pointed at our ``/v1`` on a real uvicorn, gets answers with their sources."""
from __future__ import annotations

import re

import openai
import pytest

from rag.http.app import create_app
from tests.live_server import live_server

pytestmark = pytest.mark.slow
KEY = "compat-key"
INVEST = "Combien Microsoft a-t-il investi dans OpenAI ?"


@pytest.fixture(scope="module")
def base_url(corpus_pipeline):
    """The API over the shared corpus pipeline (this module only reads), reads open."""
    with live_server(create_app(lambda: corpus_pipeline, settings=corpus_pipeline.settings)) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)


def test_models_are_the_backends(client):
    ids = [m.id for m in client.models.list()]
    assert "extractive" in ids


def test_chat_completion_has_the_answer_and_its_sources(client):
    completion = client.chat.completions.create(model="extractive", messages=[{"role": "user", "content": INVEST}])
    content = completion.choices[0].message.content
    answer, _, listed = content.partition("\n\nSources :\n")
    assert "13 milliards" in answer and listed, content
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    assert cited == {int(n) for n in re.findall(r"^\[(\d+)\] ", listed, re.M)}, "every cited passage is listed"
    assert "OpenAI et Microsoft" in listed and "(2025-06-24)" in listed
    sources = completion.model_extra["sources"]
    assert {s["n"] for s in sources} >= cited
    assert all(s["article_id"] == "openai-microsoft-partenariat" and s["text"] for s in sources)
    assert completion.model_extra["abstained"] is False
    assert completion.choices[0].finish_reason == "stop" and completion.model == "extractive"
    assert {s["n"] for s in sources if s["cited"]} == cited, "each source says whether the answer cites it"
    assert all({"dense", "bm25", "fused"} <= set(s["scores"]) for s in sources)
    usage = completion.usage
    assert usage.prompt_tokens > usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streamed_chat_matches_the_whole_one(client):
    whole = client.chat.completions.create(model="extractive", messages=[{"role": "user", "content": INVEST}])
    chunks = list(client.chat.completions.create(model="extractive", stream=True,
                                                 messages=[{"role": "user", "content": INVEST}]))
    assert len(chunks) >= 4 and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole.choices[0].message.content
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert [s["chunk_id"] for s in last.model_extra["sources"]] == [s["chunk_id"] for s in whole.model_extra["sources"]]
    assert last.usage.completion_tokens == whole.usage.completion_tokens and last.usage.prompt_tokens > 0


def test_history_and_content_parts_are_read(client):
    completion = client.chat.completions.create(model="extractive", messages=[
        {"role": "system", "content": "Tu réponds en français."},
        {"role": "user", "content": "Parle-moi du partenariat OpenAI-Microsoft."},
        {"role": "assistant", "content": "Microsoft et OpenAI sont partenaires depuis 2019 [1]."},
        {"role": "user", "content": [{"type": "text", "text": INVEST}]},
    ])
    assert "13 milliards" in completion.choices[0].message.content


def test_abstention_has_no_source_list(client):
    completion = client.chat.completions.create(
        model="extractive", messages=[{"role": "user", "content": "Quelle est la recette de la ratatouille ?"}])
    assert completion.choices[0].message.content == "Les articles ne le disent pas."
    assert completion.model_extra["abstained"] is True and completion.model_extra["sources"]


def test_errors_reach_the_client_with_their_message(client):
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": INVEST}])
    assert "unknown model 'gpt-4o'" in unknown.value.message and "extractive" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as last:
        client.chat.completions.create(model="extractive", messages=[{"role": "assistant", "content": "Bonjour"}])
    assert "last message must be the user's question" in last.value.message


def test_a_required_key_is_checked(corpus_pipeline):
    settings = corpus_pipeline.settings.model_copy(update={"api_keys": [KEY], "read_requires_key": True})
    with live_server(create_app(lambda: corpus_pipeline, settings=settings)) as url:
        good = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        assert "extractive" in [m.id for m in good.models.list()]
        with pytest.raises(openai.PermissionDeniedError) as denied:
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        assert "not valid" in denied.value.message
