"""End to end through a real uvicorn on 127.0.0.1 with the real embedding model: ask, stream, ingest."""
from __future__ import annotations

import json
import re
import shutil
import threading
import time

import httpx
import pytest

from index.store import IndexStore
from rag.backends import BACKENDS, Generation, register
from rag.http.app import create_app
from rag.pipeline import Pipeline
from tests.live_server import live_server

pytestmark = pytest.mark.slow
KEY = "e2e-key"
INVEST = "Combien Microsoft a-t-il investi dans OpenAI ?"
BIKES = {"id": "velos-cargos-lyon", "title": "Lyon met en service des vélos-cargos partagés", "date": "2025-03-03",
         "language": "fr", "url": "https://example.org/lyon-velos-cargos",
         "text": "La métropole de Lyon a mis en service 400 vélos-cargos en libre-service le 3 mars 2025. "
                 "Ils sont répartis dans 60 stations et coûtent un euro la demi-heure. "
                 "Les commerçants du centre-ville les utilisent pour leurs livraisons."}
BIKES_Q = "Combien de vélos-cargos la métropole de Lyon a-t-elle mis en service ?"


@pytest.fixture(scope="module")
def served(corpus_pipeline, tmp_path_factory):
    """The API over a private copy of the corpus index (this module writes to it), real model."""
    root = tmp_path_factory.mktemp("e2e") / "index"
    shutil.copytree(corpus_pipeline.settings.index_dir, root)
    settings = corpus_pipeline.settings.model_copy(update={"index_dir": root, "api_keys": [KEY]})
    pipeline = Pipeline(settings, corpus_pipeline.embedder, IndexStore(root).load())
    with live_server(create_app(lambda: pipeline, settings=settings)) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client, pipeline


@pytest.fixture
def trickle():
    """A backend that streams the best passage's first sentence word by word, 60 ms apart."""
    class Trickle:
        name = "trickle"

        def generate(self, request):
            sentence = re.split(r"(?<=[.!?])\s", request.hits[0].chunk.text.strip())[0]
            for word in re.findall(r"\S+\s*", sentence):
                request.on_delta(word)
                time.sleep(0.06)
            return Generation(f"{sentence} [1]", model="trickle")

    register("trickle")(lambda settings, embedder: Trickle())
    yield "trickle"
    BACKENDS.pop("trickle", None)


def test_ask_answers_with_cited_passages(served):
    client, _ = served
    r = client.post("/ask", json={"question": INVEST})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["abstained"] and "13 milliards" in body["answer"]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    by_n = {c["n"]: c for c in body["citations"]}
    assert cited and cited <= set(by_n)
    for n in cited:
        assert by_n[n]["article_id"] == "openai-microsoft-partenariat" and by_n[n]["date"] == "2025-06-24"
    source = client.get("/articles/openai-microsoft-partenariat").json()["text"]
    first = body["citations"][0]
    assert source[first["start"]:first["end"]] == first["text"], "start/end locate the passage in the article"
    assert body["timings_ms"]["total"] >= body["timings_ms"]["embed"] > 0


def test_ask_abstains_when_the_articles_dont_say(served):
    body = served[0].post("/ask", json={"question": "Quelle est la recette de la ratatouille niçoise ?"}).json()
    assert body["abstained"] and body["answer"] == "Les articles ne le disent pas."


def test_stream_sends_citations_then_deltas_then_done(served):
    client, _ = served
    with client.stream("POST", "/ask", json={"question": INVEST, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    kinds = [kind for kind, _, _ in events]
    assert kinds[0] == "citations" and kinds[-1] == "done" and kinds.count("delta") >= 3
    done = events[-1][1]
    assert "".join(data["text"] for kind, data, _ in events if kind == "delta") == done["answer"]
    assert [c["chunk_id"] for c in events[0][1]] == [c["chunk_id"] for c in done["citations"]]
    assert "13 milliards" in done["answer"] and set(done["timings_ms"]) >= {"embed", "search", "generate", "total"}


def test_stream_is_read_as_it_is_produced(served, trickle):
    """The citations arrive before the answer is written, and the words arrive one by one."""
    client, _ = served
    with client.stream("POST", "/ask/stream", json={"question": INVEST, "backend": trickle}) as r:
        events = _events(r)
    arrived = {kind: t for kind, _, t in reversed(events)}  # first arrival of each kind
    deltas = [t for kind, _, t in events if kind == "delta"]
    assert events[0][0] == "citations" and len(deltas) >= 5
    assert events[-1][2] - arrived["citations"] >= 0.2, "the citations did not wait for the answer"
    assert deltas[-1] - deltas[0] >= 0.06 * (len(deltas) - 2), "the deltas were not sent as produced"


def test_add_then_ask_then_delete_then_ask(served):
    client, _ = served
    headers = {"authorization": f"Bearer {KEY}"}
    assert BIKES["id"] not in _cited_articles(client.post("/ask", json={"question": BIKES_Q}).json())
    added = client.post("/articles", json=BIKES, headers=headers)
    assert added.status_code == 200 and added.json()["added"] == [BIKES["id"]], added.text
    answer = client.post("/ask", json={"question": BIKES_Q}).json()
    assert not answer["abstained"] and "400" in answer["answer"], answer["answer"]
    assert _cited_articles(answer) == {BIKES["id"]}
    citation = next(c for c in answer["citations"] if c["article_id"] == BIKES["id"])
    assert any("400 vélos-cargos" in citation["text"][a:b] for a, b in citation["highlights"])
    assert citation["url"] == BIKES["url"] and citation["date"] == BIKES["date"]
    deleted = client.delete(f"/articles/{BIKES['id']}", headers=headers)
    assert deleted.status_code == 200 and deleted.json()["deleted"] == [BIKES["id"]]
    after = client.post("/ask", json={"question": BIKES_Q}).json()
    assert BIKES["id"] not in {c["article_id"] for c in after["citations"]}
    assert after["abstained"]


def test_questions_during_an_ingest_see_one_whole_index(served):
    """Asked while articles are added and deleted, every question is answered from a whole version."""
    client, pipeline = served
    url, headers, stop, seen, failures = str(client.base_url), {"x-api-key": KEY}, threading.Event(), [], []


    def ask_loop():
        with httpx.Client(base_url=url, timeout=60) as own:
            while not stop.is_set():
                r = own.post("/ask", json={"question": BIKES_Q, "top_k": 8})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                seen.append({c["article_id"] for c in r.json()["citations"]})

    threads = [threading.Thread(target=ask_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            assert client.post("/articles", json=BIKES, headers=headers).status_code == 200
            assert BIKES["id"] in _cited_articles(client.post("/ask", json={"question": BIKES_Q}).json()), \
                "a question after the write returned sees the new article"
            assert client.delete(f"/articles/{BIKES['id']}", headers=headers).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures and len(seen) >= 3
    assert all(ids <= {"openai-microsoft-partenariat", BIKES["id"]} for ids in seen)
    data = pipeline.data
    assert len(data.chunks) == len(data.vectors) == data.faiss.ntotal == data.manifest["counts"]["chunks"]


def _events(response) -> list[tuple[str, object, float]]:
    """(event, parsed data, arrival time) for each Server-Sent Event, read line by line as it comes."""
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:]), time.monotonic()))
    return events


def _cited_articles(answer: dict) -> set[str]:
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer["answer"])}
    return {c["article_id"] for c in answer["citations"] if c["n"] in cited}
