"""The HTTP API through a real uvicorn on 127.0.0.1, on a fake-embedder index: input checks, keys, limits, errors.

The answers themselves (real model) are checked in test_api_e2e.py and test_openai_compat.py.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import time

import httpx
import pytest

from rag.backends import BACKENDS, register
from rag.http.app import create_app
from tests.fakes import fake_pipeline
from tests.live_server import live_server

KEY = "test-key-1"
QUESTION = "Microsoft a investi 13 milliards de dollars cumulés dans OpenAI ?"


@contextlib.contextmanager
def serve(tmp_path, **overrides):
    """A live API over a fake-embedder index of the bundled corpus; yields (client, pipeline)."""
    pipeline = fake_pipeline(tmp_path / "index", **{"api_keys": [KEY], **overrides})
    with live_server(create_app(lambda: pipeline, settings=pipeline.settings)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, pipeline


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("api")) as (client, _):
        yield client


@pytest.fixture
def boom():
    """A backend that fails with an unexpected error (a bug), registered for one test."""
    class Boom:
        name = "boom"

        def generate(self, request):
            raise RuntimeError("secret internal detail")

    register("boom")(lambda settings, embedder: Boom())
    yield "boom"
    BACKENDS.pop("boom", None)


def test_every_response_has_a_request_id(api):
    given = api.get("/health", headers={"x-request-id": "abc-123"})
    assert given.json() == {"status": "ok"} and given.headers["x-request-id"] == "abc-123"
    fresh = api.get("/health")
    assert re.fullmatch(r"[0-9a-f]{16}", fresh.headers["x-request-id"])
    assert api.get("/nope").headers["x-request-id"], "errors carry one too"
    junk = api.get("/health", headers={"x-request-id": "a b\tc" * 30})
    assert re.fullmatch(r"[0-9a-f]{16}", junk.headers["x-request-id"]), "an unsafe id is replaced"


def test_ask_returns_answer_citations_and_timings(api):
    r = api.post("/ask", json={"question": QUESTION, "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"answer", "abstained", "citations", "timings_ms", "backend", "model"} <= set(body)
    assert not body["abstained"] and body["backend"] == "extractive"
    assert len(body["citations"]) == 3 and [c["n"] for c in body["citations"]] == [1, 2, 3]
    assert {"n", "chunk_id", "article_id", "title", "date", "url", "text", "start", "end",
            "score"} <= set(body["citations"][0])
    assert {"embed", "search", "generate", "total"} <= set(body["timings_ms"])
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    assert cited and cited <= {1, 2, 3}
    assert {c["n"] for c in body["citations"] if c["cited"]} == cited, "cited passages are flagged"
    for c in body["citations"]:
        assert {"dense", "bm25", "fused"} <= set(c["scores"]) and c["scores"]["fused"] == c["score"]
        assert -1 <= c["scores"]["dense"] <= 1


def test_filters_restrict_the_passages(api):
    none = api.post("/ask", json={"question": QUESTION, "filters": {"article_ids": ["not-there"]}}).json()
    assert none["abstained"] and none["citations"] == []
    english = api.post("/ask", json={"question": QUESTION, "filters": {"language": "en"}}).json()
    assert english["citations"] == [], "the corpus is French"
    dated = api.post("/ask", json={"question": QUESTION,
                                   "filters": {"date_from": "2025-06-24", "date_to": "2025-06-24"}})
    assert dated.json()["citations"]


@pytest.mark.parametrize("body, status, words", [
    ({"question": ""}, 422, ["question"]),
    ({"question": "   "}, 422, ["question"]),
    ({"question": "x" * 2001}, 400, ["2001 characters", "limit is 2000", "RAG_MAX_QUESTION_CHARS"]),
    ({}, 422, ["question: Field required"]),
    ({"question": "q", "top_k": 0}, 422, ["top_k", "greater than or equal to 1"]),
    ({"question": "q", "top_k": 21}, 422, ["top_k", "less than or equal to 20"]),
    ({"question": "q", "top_k": "5"}, 422, ["top_k", "integer"]),
    ({"question": "q", "backend": "nope"}, 400, ["unknown backend 'nope'", "known:", "extractive"]),
    ({"question": "q", "mode": "nope"}, 400, ["unknown retrieval mode 'nope'", "dense"]),
    ({"question": "q", "history": [{"role": "robot", "content": "hi"}]}, 422, ["history.0.role"]),
    ({"question": "q", "history": [{"role": "user"}]}, 422, ["history.0.content: Field required"]),
    ({"question": "q", "history": "hello"}, 422, ["history"]),
    ({"question": "q", "filters": {"date_from": "24/06/2025"}}, 422, ["filters.date_from"]),
    ({"question": "q", "filters": {"date_from": "2025-13-45"}}, 422, ["filters.date_from: must be a date written "
                                                                       "YYYY-MM-DD, e.g. 2025-06-24"]),
    ({"question": "q", "filters": {"language": "FR"}}, 422, ["filters.language: must be a two-letter ISO 639-1"]),
    ({"question": "q", "history": [{"role": "robot", "content": "x"}]}, 422, ["history.0.role: must be user or"]),
    ({"question": "q", "filters": {"date_to": "2025-02-30"}}, 422, ["filters.date_to", "does not exist"]),
    ({"question": "\u200b\u200c\u2060"}, 422, ["question: is empty (only spaces or invisible characters)"]),
    ({"question": "\u0000\u0000"}, 422, ["question: is empty"]),
    ({"question": "q", "topk": 3}, 422, ["topk", "Extra inputs are not permitted"]),
    ({"question": "q", "stream": "yes"}, 422, ["stream"]),
])
def test_bad_input_is_a_4xx_that_says_what_to_fix(api, body, status, words):
    r = api.post("/ask", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert "should match pattern" not in error, "a pattern is said in words, not as a regular expression"
    for word in words:
        assert word in error
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_over_long_question_limit_is_configurable(tmp_path):
    with serve(tmp_path, max_question_chars=40) as (client, _):
        r = client.post("/ask", json={"question": "y" * 41})
        assert r.status_code == 400 and "limit is 40" in r.json()["error"]
        padded = client.post("/ask", json={"question": "  " + "y" * 38 + "  "})
        assert padded.status_code == 400, "spaces count, as the schema's maxLength says"
        assert client.post("/ask", json={"question": "y" * 40}).status_code == 200
        assert (client.get("/openapi.json").json()["components"]["schemas"]["AskIn"]["properties"]["question"]
                ["maxLength"] == 40)


def test_malformed_json_is_a_400(api):
    r = api.post("/ask", content=b'{"question": "q",', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"] and "character" in r.json()["error"]


def test_a_body_that_is_not_json_is_a_415(api):
    r = api.post("/ask", content=b'{"question": "q"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]


def test_body_too_large_is_a_413_with_the_limit(tmp_path):
    with serve(tmp_path, max_body_bytes=2048) as (client, _):
        big = {"question": "q", "history": [{"role": "user", "content": "x" * 3000}]}
        r = client.post("/ask", json=big)
        assert r.status_code == 413
        assert "2048" in r.json()["error"] and "RAG_MAX_BODY_BYTES" in r.json()["error"]
        chunked = client.post("/ask", content=iter([json.dumps(big).encode()[:1500], b" " * 1500]),
                              headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and "2048" in chunked.json()["error"], "no Content-Length: counted"
        assert client.post("/ask", json={"question": QUESTION}).status_code == 200


def test_internal_error_is_a_500_with_request_id_and_no_trace(api, boom, caplog):
    with caplog.at_level(logging.ERROR, logger="rag.http"):
        r = api.post("/ask", json={"question": QUESTION, "backend": boom}, headers={"x-request-id": "req-500"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; quote the request id when reporting it", "request_id": "req-500"}
    assert "secret" not in r.text and "Traceback" not in r.text
    logged = [rec for rec in caplog.records if "req-500" in rec.getMessage()]
    assert logged and logged[0].exc_info and "secret internal detail" in str(logged[0].exc_info[1])


def test_internal_error_mid_stream_is_an_error_event(api, boom):
    with api.stream("POST", "/ask/stream", json={"question": QUESTION, "backend": boom}) as r:
        assert r.status_code == 200
        text = r.read().decode()
    assert text.startswith("event: citations\n")
    assert "event: error\n" in text and "internal error" in text and "secret" not in text


def test_stream_bad_input_is_still_a_4xx(api):
    r = api.post("/ask/stream", json={"question": "q", "backend": "nope"})
    assert r.status_code == 400 and "known:" in r.json()["error"]


def test_unknown_route_and_method(api):
    r = api.get("/nope")
    assert r.status_code == 404 and "/docs" in r.json()["error"]
    r = api.put("/articles")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}


def test_writes_need_a_valid_key(api):
    article = {"id": "auth-test", "text": "Un texte."}
    missing = api.post("/articles", json=article)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["error"]
    wrong = api.post("/articles", json=article, headers={"x-api-key": "wrong"})
    assert wrong.status_code == 403 and "not valid" in wrong.json()["error"]
    assert api.delete("/articles/auth-test", headers={"authorization": "Bearer wrong"}).status_code == 403
    assert api.get("/articles").status_code == 200, "reads are open by default"


def test_writes_are_disabled_without_configured_keys(tmp_path):
    with serve(tmp_path, api_keys=[]) as (client, _):
        r = client.post("/articles", json={"text": "x"}, headers={"x-api-key": "anything"})
        assert r.status_code == 403 and "RAG_API_KEYS" in r.json()["error"]


def test_reads_can_require_a_key(tmp_path):
    with serve(tmp_path, read_requires_key=True) as (client, _):
        assert client.post("/ask", json={"question": QUESTION}).status_code == 401
        assert client.get("/articles", headers={"x-api-key": "bad"}).status_code == 403
        assert client.get("/v1/models").status_code == 401
        assert client.post("/ask", json={"question": QUESTION},
                           headers={"authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        security = client.get("/openapi.json").json()["paths"]["/ask"]["post"]["security"]
        assert {} not in security, "the schema says the key is required"


def test_articles_add_list_get_replace_delete(api):
    headers = {"x-api-key": KEY}
    before = api.get("/ready").json()
    batch = [{"id": "a-1", "title": "Premier", "text": "La ratatouille se cuit lentement au four.",
              "date": "2025-01-02"},
             {"text": "Second article sans identifiant.\nAvec deux lignes.", "language": "fr"}]
    r = api.post("/articles", json=batch, headers=headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["added"] == ["a-1", "second-article-sans-identifiant"]
    assert report["articles_total"] == before["articles"] + 2 and report["chunks_embedded"] >= 2
    assert api.post("/articles", json=batch[0], headers=headers).json()["unchanged"] == ["a-1"]
    changed = {**batch[0], "text": "La ratatouille se cuit à feu doux."}
    assert api.post("/articles", json=changed, headers=headers).json()["replaced"] == ["a-1"]
    listed = {a["id"]: a for a in api.get("/articles").json()}
    assert listed["a-1"]["date"] == "2025-01-02" and listed["a-1"]["chunks"] == 1
    one = api.get("/articles/a-1").json()
    assert one["text"] == changed["text"] and "path" not in one
    for article_id in ("a-1", "second-article-sans-identifiant"):
        assert api.delete(f"/articles/{article_id}", headers=headers).json()["deleted"] == [article_id]
    assert api.get("/articles/a-1").status_code == 404
    gone = api.delete("/articles/a-1", headers=headers)
    assert gone.status_code == 404 and "GET /articles" in gone.json()["error"]
    assert api.get("/ready").json()["chunks"] == before["chunks"]


@pytest.mark.parametrize("body, status, words", [
    ({"id": "bad id!", "text": "x"}, 422, ["id"]),
    ({"text": "x", "date": "hier"}, 422, ["date"]),
    ({"text": "x", "date": "2025-02-30"}, 422, ["date", "does not exist"]),
    ({"text": "\u200b\u200b\ufeff"}, 422, ["text: is empty (only spaces or invisible characters)"]),
    ({"text": "  \n "}, 422, ["text"]),
    ({"title": "no text"}, 422, ["text: Field required"]),
    ([], 422, ["at least 1"]),
    ({"text": "x", "body": "y"}, 422, ["body", "Extra inputs"]),
])
def test_bad_articles_are_refused_with_the_field(api, body, status, words):
    r = api.post("/articles", json=body, headers={"x-api-key": KEY})
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["error"]


def test_a_later_article_with_the_same_id_wins(api):
    headers = {"x-api-key": KEY}
    r = api.post("/articles", json=[{"id": "dup", "text": "premier"}, {"id": "dup", "text": "second"}], headers=headers)
    assert r.json()["added"] == ["dup"] and api.get("/articles/dup").json()["text"] == "second"
    api.delete("/articles/dup", headers=headers)


def test_ready_reports_the_index_and_backends(api):
    ready = api.get("/ready").json()
    assert ready["status"] == "ready" and ready["articles"] >= 1 and ready["chunks"] >= ready["articles"]
    assert ready["model"] == "fake:64" and "extractive" in ready["backends"]
    assert ready["manifest"]["counts"] == {"articles": ready["articles"], "chunks": ready["chunks"]}


def test_openapi_schema_and_docs(api):
    spec = api.get("/openapi.json").json()
    assert {"/ask", "/ask/stream", "/articles", "/articles/{article_id}", "/health", "/ready",
            "/v1/chat/completions", "/v1/models"} <= set(spec["paths"])
    ask = spec["components"]["schemas"]["AskIn"]
    assert ask["examples"] and "extractive" in ask["properties"]["backend"]["anyOf"][0]["enum"]
    assert "text/event-stream" in spec["paths"]["/ask"]["post"]["responses"]["200"]["content"]
    assert {} in spec["paths"]["/ask"]["post"]["security"], "reads are open by default"
    assert {} not in spec["paths"]["/articles"]["post"]["security"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/docs-assets/") for a in assets), "no CDN: the page works offline"
    assert all(api.get(a).status_code == 200 for a in assets)



def test_importing_the_api_loads_no_model_library():
    """The app module stays light: models load in the lifespan, not at import."""
    import subprocess
    import sys

    code = ("import sys, rag.http.app, rag.http.openai; "
            "print(','.join(m for m in ('torch', 'faiss', 'sentence_transformers', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_too_many_or_too_large_headers_are_a_431(api):
    many = api.get("/health", headers={f"x-h{i}": "v" for i in range(150)})
    assert many.status_code == 431 and "limits are 100 headers" in many.json()["error"]
    large = api.get("/health", headers={"x-big": "v" * 40_000})
    assert large.status_code == 431 and many.headers["x-request-id"]
    assert api.get("/health", headers={"x-ok": "v" * 1000}).status_code == 200


def test_an_unconfigured_backend_is_a_503_that_says_what_to_set(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RAG_OPENAI_BASE_URL", "RAG_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with serve(tmp_path, openai_base_url="", openai_api_key="") as (client, _):
        r = client.post("/ask", json={"question": QUESTION, "backend": "openai"})
        assert r.status_code == 503 and "openai backend is not configured" in r.json()["error"]
        assert "RAG_OPENAI_BASE_URL" in r.json()["error"]
        r = client.post("/ask", json={"question": QUESTION, "backend": "llamacpp"})
        assert r.status_code == 503 and "RAG_LLAMACPP_MODEL" in r.json()["error"]
        offered = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert "extractive" in offered and "openai" not in offered and "llamacpp" not in offered
        assert client.get("/ready").json()["backends"] == offered
        spec = client.get("/openapi.json").json()
        for path in ("/ask", "/ask/stream", "/v1/chat/completions"):
            assert {"502", "503", "431"} <= set(spec["paths"][path]["post"]["responses"]), path


def test_a_large_batch_is_a_job_to_poll(tmp_path):
    with serve(tmp_path, ingest_job_chars=1000) as (client, pipeline):
        batch = [{"id": f"job-{i}", "text": f"Article {i}. " + "Une phrase sur le sujet. " * 30} for i in range(3)]
        r = client.post("/articles", json=batch, headers={"x-api-key": KEY})
        assert r.status_code == 202 and r.headers["location"] == r.json()["url"], r.text
        job = r.json()
        assert job["status"] in ("queued", "running", "done") and job["articles"] == 3
        for _ in range(200):
            polled = client.get(job["url"], headers={"x-api-key": KEY}).json()
            if polled["status"] in ("done", "failed"):
                break
            time.sleep(0.05)
        assert polled["status"] == "done" and sorted(polled["result"]["added"]) == ["job-0", "job-1", "job-2"]
        assert {a["id"] for a in client.get("/articles").json()} >= {"job-0", "job-1", "job-2"}
        small = client.post("/articles", json={"id": "now", "text": "Court."}, headers={"x-api-key": KEY})
        assert small.status_code == 200 and small.json()["added"] == ["now"]
        forced = client.post("/articles?wait=true", json=batch, headers={"x-api-key": KEY})
        assert forced.status_code == 200 and sorted(forced.json()["unchanged"]) == ["job-0", "job-1", "job-2"]
        bad = client.post("/articles", json=[*batch, {"id": "x", "text": "y", "date": "2025-02-30"}],
                          headers={"x-api-key": KEY})
        assert bad.status_code == 422, "a bad article refuses the whole batch before any job"
        missing = client.get("/articles/jobs/nope", headers={"x-api-key": KEY})
        assert missing.status_code == 404 and "post the batch again" in missing.json()["error"]
        assert client.get(job["url"]).status_code == 401, "jobs are for writers"


def test_favicon_and_quiet_ui_logs(api, caplog):
    icon = api.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
    with caplog.at_level(logging.INFO, logger="rag.http"):
        api.get("/favicon.ico")
        api.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("path=/health" in m for m in lines) and not any("favicon" in m for m in lines)


def test_rag_ask_can_ask_a_running_server(tmp_path, capsys):
    from newsrag.cli import main

    with serve(tmp_path) as (client, _):
        url = str(client.base_url).rstrip("/")
        assert main(["ask", "--server", url, QUESTION]) == 0
        out = capsys.readouterr().out
        assert "Sources:" in out and "[1]" in out
        assert main(["ask", "--server", url, "--json", QUESTION]) == 0
        assert json.loads(capsys.readouterr().out)["citations"]
        assert main(["ask", "--server", url, "--backend", "nope", QUESTION]) != 0
        assert "answered 400" in capsys.readouterr().err
    assert main(["ask", "--server", url, QUESTION]) != 0
    assert "no server answered" in capsys.readouterr().err


def test_rag_index_can_write_through_a_running_server(tmp_path, capsys, monkeypatch):
    from newsrag.cli import main

    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "breve.md").write_text("# Brève du matin\n\nLe tramway de Lyon roulera toute la nuit du 31 décembre.",
                                     encoding="utf-8")
    with serve(tmp_path) as (client, _):
        url = str(client.base_url).rstrip("/")
        monkeypatch.delenv("RAG_WRITE_KEY", raising=False)
        assert main(["index", "--server", url, str(folder)]) != 0
        assert "401" in capsys.readouterr().err
        monkeypatch.setenv("RAG_WRITE_KEY", KEY)
        assert main(["index", "--server", url, "--json", str(folder)]) == 0
        added = json.loads(capsys.readouterr().out)["added"]
        assert len(added) == 1 and added[0] in {a["id"] for a in client.get("/articles").json()}
        assert main(["index", "--server", url, str(folder)]) == 0
        assert "0 added, 0 replaced, 1 unchanged" in capsys.readouterr().out
        assert main(["index", "--server", url, "--delete", added[0]]) == 0
        assert added[0] not in {a["id"] for a in client.get("/articles").json()}
        assert main(["index", "--server", url, "--compact"]) != 0
        assert "where the index folder is" in capsys.readouterr().err
    assert main(["index", "--server", url, str(folder)]) != 0
    assert "no server answered" in capsys.readouterr().err


def test_an_article_page_marks_the_cited_span(tmp_path):
    article = {"id": "page-1", "title": "Un <titre>", "date": "2025-03-03", "url": "javascript:alert(1)",
               "text": "## Contexte\n\nPremière phrase. La phrase citée <b>ici</b>. Fin."}
    with serve(tmp_path) as (client, _):
        assert client.post("/articles", json=article, headers={"x-api-key": KEY}).status_code == 200
        start = article["text"].index("La phrase")
        end = article["text"].index(" Fin")
        page = client.get(f"/articles/page-1/view?start={start}&end={end}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<mark id="cited">La phrase citée &lt;b&gt;ici&lt;/b&gt;.</mark>' in page.text
        assert "<h2>Contexte</h2>" in page.text and "Un &lt;titre&gt;" in page.text
        assert "javascript:" not in page.text and "default-src 'none'" in page.headers["content-security-policy"]
        assert "<mark" not in client.get("/articles/page-1/view").text, "no span, nothing marked"
        assert client.get("/articles/nope/view").status_code == 404
        assert client.get("/articles/page-1/view?start=-1").status_code == 422


def test_an_article_over_the_size_limit_is_refused_with_its_index(tmp_path):
    with serve(tmp_path, max_article_chars=10_000) as (client, _):
        r = client.post("/articles", json=[{"text": "Court."}, {"text": "x " * 6000}], headers={"x-api-key": KEY})
        assert r.status_code == 400 and "articles[1]: the article has 12,000 characters" in r.json()["error"]
        assert "RAG_MAX_ARTICLE_CHARS" in r.json()["error"]
        assert client.get("/articles").json() and "court" not in {a["id"] for a in client.get("/articles").json()}
